"""Image folders as labelled files: scanning, validation, the train/val split and the split manifest.

A dataset is `<root>/<class>/<image>`; class names are the folder names. Files are identified by their path
relative to the root and by their content hash, never by an absolute path, so a manifest written by one stage
resolves against another stage's local copy of the same dataset version.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from classifier.images import DEFAULT_MIN_SIDE, InvalidImage, decode_image, sha256_file


@dataclass(frozen=True, order=True)
class LabeledFile:
    relpath: str  # POSIX path relative to the dataset root, e.g. "cat/cat_00001.jpg"
    label: str
    sha256: str


def scan_folder(root: str | Path) -> list[LabeledFile]:
    """Every file under `<root>/<class>/`, sorted by path; hidden files and folders are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset folder {root} does not exist.")
    files = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(class_dir.rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                files.append(LabeledFile(rel.as_posix(), class_dir.name, sha256_file(path)))
    return sorted(files)


def class_names(files: Iterable[LabeledFile]) -> list[str]:
    return sorted({f.label for f in files})


@dataclass
class ValidationReport:
    valid: list[LabeledFile]
    rejected: list[tuple[LabeledFile, str]]
    duplicates: list[tuple[LabeledFile, LabeledFile]]  # (dropped duplicate, kept file with the same content)
    class_counts: dict[str, int]

    def summary(self) -> str:
        counts = ", ".join(f"{label}: {count}" for label, count in self.class_counts.items())
        return (
            f"{len(self.valid)} valid images ({counts}); {len(self.rejected)} rejected; "
            f"{len(self.duplicates)} exact duplicates dropped"
        )

    def to_dict(self) -> dict:
        return {
            "valid": len(self.valid),
            "class_counts": dict(self.class_counts),
            "rejected": [{"relpath": f.relpath, "label": f.label, "reason": why} for f, why in self.rejected],
            "duplicates": [{"relpath": d.relpath, "duplicate_of": k.relpath} for d, k in self.duplicates],
        }


def _check(root: Path, item: LabeledFile, min_side: int) -> str | None:
    """None if the file decodes into an acceptable image, else the reason it does not."""
    try:
        data = (root / item.relpath).read_bytes()
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"
    if hashlib.sha256(data).hexdigest() != item.sha256:
        return "content changed since it was scanned (hash mismatch)"
    try:
        decode_image(data, min_side=min_side)
    except InvalidImage as exc:
        return str(exc)
    return None


def validate_files(
    root: str | Path,
    files: Sequence[LabeledFile],
    min_side: int = DEFAULT_MIN_SIDE,
    workers: int | None = None,
) -> ValidationReport:
    """Decode every image and sort the files into valid, rejected (with the reason) and duplicates.

    Exact duplicates (same content hash) with the same label keep the first file by path. The same content under
    two different labels cannot be trusted either way, so every copy is rejected.
    """
    root = Path(root)
    files = sorted(files)
    workers = workers or min(8, os.cpu_count() or 1)
    # PIL releases the GIL while decoding, so threads give real parallelism here.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(lambda f: _check(root, f, min_side), files))

    rejected = [(f, why) for f, why in zip(files, reasons, strict=True) if why is not None]
    decodable = [f for f, why in zip(files, reasons, strict=True) if why is None]
    labels_by_hash: dict[str, set[str]] = defaultdict(set)
    for f in decodable:
        labels_by_hash[f.sha256].add(f.label)

    valid, duplicates, kept_by_hash = [], [], {}
    for f in decodable:
        labels = labels_by_hash[f.sha256]
        if len(labels) > 1:
            rejected.append((f, f"the same image is labelled as {' and '.join(sorted(labels))}"))
        elif f.sha256 in kept_by_hash:
            duplicates.append((f, kept_by_hash[f.sha256]))
        else:
            kept_by_hash[f.sha256] = f
            valid.append(f)
    rejected.sort()
    counts = Counter(f.label for f in valid)
    return ValidationReport(valid, rejected, duplicates, {label: counts[label] for label in sorted(counts)})


def is_validation(sha256: str, val_fraction: float) -> bool:
    """The side a file lands on depends on its content hash alone, so it never changes between versions."""
    bucket = int.from_bytes(hashlib.sha256(f"split-v1:{sha256}".encode()).digest()[:8], "big")
    return bucket < val_fraction * 2**64


def split_by_hash(
    files: Sequence[LabeledFile], val_fraction: float = 0.2
) -> tuple[list[LabeledFile], list[LabeledFile]]:
    """Deterministic train/val split by content hash.

    Each file's side depends only on its own hash, so adding or removing other files never moves it, and the
    same picture under another path or in another version stays on the same side. Every class is split with
    the same rule, so each class gets about `val_fraction` of its files into validation (exactly in
    expectation, not per class: a class with a handful of images may get none).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    train, val = [], []
    for f in sorted(files):
        (val if is_validation(f.sha256, val_fraction) else train).append(f)
    return train, val


@dataclass
class SplitManifest:
    """The split a prepare stage hands to train/evaluate stages (as an artifact, next to the dataset id)."""

    dataset_id: str | None
    classes: list[str]
    train: list[LabeledFile]
    val: list[LabeledFile]
    report: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "dataset_id": self.dataset_id,
                "classes": self.classes,
                "train": [asdict(f) for f in self.train],
                "val": [asdict(f) for f in self.val],
                "report": self.report,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> SplitManifest:
        try:
            raw = json.loads(text)
            return cls(
                dataset_id=raw["dataset_id"],
                classes=list(raw["classes"]),
                train=[LabeledFile(**f) for f in raw["train"]],
                val=[LabeledFile(**f) for f in raw["val"]],
                report=raw.get("report", {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"Not a split manifest: {exc}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> SplitManifest:
        return cls.from_json(Path(path).read_text())

    def resolve(self, root: str | Path, verify_hashes: bool = False) -> Path:
        """Check that `root` (a local copy of the dataset version) holds every listed file; return it as a Path.

        Raises FileNotFoundError naming the missing files (or ValueError for changed content when verifying).
        """
        root = Path(root)
        listed = self.train + self.val
        missing = [f.relpath for f in listed if not (root / f.relpath).is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise FileNotFoundError(f"{len(missing)} files of the split are missing under {root}: {shown}")
        if verify_hashes:
            changed = [f.relpath for f in listed if sha256_file(root / f.relpath) != f.sha256]
            if changed:
                raise ValueError(f"{len(changed)} files under {root} differ from the split: {changed[:5]}")
        return root


def prepare_split(
    root: str | Path, dataset_id: str | None = None, val_fraction: float = 0.2, min_side: int = DEFAULT_MIN_SIDE
) -> tuple[SplitManifest, ValidationReport]:
    """Scan, validate and split a dataset folder in one call (what the prepare stage does)."""
    report = validate_files(root, scan_folder(root), min_side=min_side)
    if not report.valid:
        raise ValueError(f"No valid images under {root}: {report.summary()}")
    train, val = split_by_hash(report.valid, val_fraction)
    manifest = SplitManifest(dataset_id, class_names(report.valid), train, val, report.to_dict())
    return manifest, report
