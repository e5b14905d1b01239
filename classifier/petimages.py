"""The seed's download step, for real: the Microsoft PetImages archive (Kaggle "cats vs dogs", 25,000 JPEGs).

The archive holds `PetImages/Cat/*.jpg` and `PetImages/Dog/*.jpg`, some of them corrupt or not JPEGs at all;
those are skipped with a reason. Needs internet; everything else in the project works without it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from classifier.images import DEFAULT_MIN_SIDE, InvalidImage, decode_image
from common.files import write_atomically

log = logging.getLogger(__name__)

DEFAULT_URL = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
)
ARCHIVE_CLASSES = {"Cat": "cat", "Dog": "dog"}
CHUNK = 1 << 20


@dataclass
class PetImagesReport:
    archive: Path
    extracted: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (member name in the archive, reason)

    def summary(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.extracted.items()))
        return f"extracted {sum(self.extracted.values())} images ({counts}); skipped {len(self.skipped)}"


def download(url: str, target: Path, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Stream `url` to `target`. A `<target>.part` left by an interrupted run is resumed with an HTTP Range
    request when the server supports it, otherwise restarted. The size is checked against Content-Length and,
    when given, the content against `sha256`; a mismatch deletes the file and raises."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the .part is already complete (or longer than the file): start over
            part.unlink()
            return download(url, target, sha256, timeout)
        raise RuntimeError(f"Download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise RuntimeError(f"Download of {url} failed: {exc.reason}") from None

    with response:
        resumed = have and response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length is not None else None
        with (
            open(part, "ab" if resumed else "wb") as out,
            tqdm(total=expected, initial=have, unit="B", unit_scale=True, desc=target.name, leave=False) as bar,
        ):
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))

    size = part.stat().st_size
    if expected is not None and size != expected:
        part.unlink()
        raise RuntimeError(f"Download of {url} is incomplete: {size} bytes, expected {expected}.")
    if sha256 and (actual := _sha256(part)) != sha256.lower():
        part.unlink()
        raise RuntimeError(f"Download of {url} has sha256 {actual}, expected {sha256}.")
    os.replace(part, target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def extract_petimages(archive: str | Path, dest: str | Path, min_side: int = DEFAULT_MIN_SIDE) -> PetImagesReport:
    """Extract the decodable cat and dog images of `archive` into `<dest>/cat` and `<dest>/dog`."""
    archive, dest = Path(archive), Path(dest)
    report = PetImagesReport(archive=archive, extracted={name: 0 for name in ARCHIVE_CLASSES.values()})
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{archive} is not a readable zip archive: {exc}") from None
    with bundle:
        for info in tqdm(bundle.infolist(), desc="extracting", leave=False):
            parts = PurePosixPath(info.filename).parts
            if info.is_dir() or len(parts) != 3 or parts[0] != "PetImages" or parts[1] not in ARCHIVE_CLASSES:
                continue
            name = parts[2]
            if name.lower() == "thumbs.db":
                continue
            try:
                data = bundle.read(info)
                decode_image(data, min_side=min_side)
            except (InvalidImage, zipfile.BadZipFile, OSError, ValueError) as exc:  # CRC errors are BadZipFile
                report.skipped.append((info.filename, str(exc)))
                continue
            label = ARCHIVE_CLASSES[parts[1]]
            # Only the base name is used, so a crafted member name cannot write outside `dest`.
            target = dest / label / name
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, data, durable=False)  # extracted again from the archive if lost
            report.extracted[label] += 1
    if not any(report.extracted.values()):
        raise ValueError(
            f"{archive} contains no PetImages/Cat or PetImages/Dog images ({len(report.skipped)} skipped)."
        )
    return report


def download_petimages(
    dest: str | Path,
    url: str = DEFAULT_URL,
    archive: str | Path | None = None,
    sha256: str | None = None,
    keep_archive: bool = True,
    min_side: int = DEFAULT_MIN_SIDE,
) -> PetImagesReport:
    """Download (or take the local `archive`) and extract PetImages into `<dest>/cat|dog`.

    The download goes to `<dest>/.download/<archive name>`; an existing complete file there is reused.
    """
    dest = Path(dest)
    if archive is None:
        archive = dest / ".download" / (PurePosixPath(urllib.request.urlparse(url).path).name or "petimages.zip")
        if not archive.exists():
            download(url, archive, sha256=sha256)
            if not zipfile.is_zipfile(archive):  # e.g. an HTML error page served with status 200
                archive.unlink()
                raise RuntimeError(f"{url} did not return a zip archive.")
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"Archive {archive} does not exist.")
    report = extract_petimages(archive, dest, min_side=min_side)
    log.info("PetImages: %s", report.summary())
    if not keep_archive and archive.parent == dest / ".download":
        shutil.rmtree(archive.parent)
    return report
