"""The PetImages downloader against a real HTTP server on 127.0.0.1 serving an archive built here."""

import hashlib
import io
import re
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from classifier.data import scan_folder, validate_files
from classifier.petimages import download, download_petimages
from classifier.synthetic import make_image


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files, with single-range support (`Range: bytes=N-`) like the Microsoft download server."""

    ranges_seen: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        match = re.fullmatch(r"bytes=(\d+)-", header or "")
        if not match:
            return super().do_GET()
        RangeHandler.ranges_seen.append(header)
        data = Path(path).read_bytes()
        start = int(match.group(1))
        if start >= len(data):
            self.send_error(416)
            return
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:])


class NoRangeHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _jpeg(label, i):
    buffer = io.BytesIO()
    make_image(label, i, size=64).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def archive(tmp_path):
    """A PetImages-shaped zip: 5 cats, 4 dogs, and the kinds of junk the real archive holds."""
    path = tmp_path / "served" / "kagglecatsanddogs_test.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as bundle:
        for i in range(5):
            bundle.writestr(f"PetImages/Cat/{i}.jpg", _jpeg("cat", i))
        for i in range(4):
            bundle.writestr(f"PetImages/Dog/{i}.jpg", _jpeg("dog", i))
        bundle.writestr("PetImages/Cat/666.jpg", b"")  # the real archive has a 0-byte cat
        bundle.writestr("PetImages/Dog/11702.jpg", _jpeg("dog", 9)[:300])  # and truncated/corrupt dogs
        bundle.writestr("PetImages/Dog/Thumbs.db", b"\xd0\xcf\x11\xe0 windows thumbnail cache")
        bundle.writestr("CDLA-Permissive-2.0.pdf", b"%PDF-1.4 licence")
        bundle.writestr("readme[1].txt", "text")
    return path


def _serve(handler, directory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def server(archive):
    server, thread = _serve(RangeHandler, archive.parent)
    RangeHandler.ranges_seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_download_extracts_cats_and_dogs_and_skips_corrupt_files(server, archive, tmp_path):
    dest = tmp_path / "petimages"
    report = download_petimages(dest, url=server, sha256=hashlib.sha256(archive.read_bytes()).hexdigest())
    assert report.extracted == {"cat": 5, "dog": 4}
    skipped = dict(report.skipped)
    assert set(skipped) == {"PetImages/Cat/666.jpg", "PetImages/Dog/11702.jpg"}
    assert "empty" in skipped["PetImages/Cat/666.jpg"]
    assert (dest / ".download" / archive.name).read_bytes() == archive.read_bytes()
    files = scan_folder(dest)
    assert sorted({f.label for f in files}) == ["cat", "dog"] and len(files) == 9
    assert len(validate_files(dest, files).valid) == 9
    # A second call reuses the downloaded archive and rewrites the same files.
    assert download_petimages(dest, url=server).extracted == {"cat": 5, "dog": 4}


def test_interrupted_download_resumes_with_a_range_request(server, archive, tmp_path):
    target = tmp_path / "dl" / "archive.zip"
    target.parent.mkdir()
    content = archive.read_bytes()
    (target.parent / "archive.zip.part").write_bytes(content[:1000])
    download(server, target)
    assert RangeHandler.ranges_seen == ["bytes=1000-"]
    assert target.read_bytes() == content
    assert not (target.parent / "archive.zip.part").exists()

    # A complete .part left behind (crash before the rename): the server answers 416 and the download restarts.
    target.unlink()
    (target.parent / "archive.zip.part").write_bytes(content)
    download(server, target)
    assert RangeHandler.ranges_seen[-1] == f"bytes={len(content)}-"
    assert target.read_bytes() == content


def test_server_without_range_support_restarts_the_download(archive, tmp_path):
    server, thread = _serve(NoRangeHandler, archive.parent)
    try:
        target = tmp_path / "archive.zip"
        (tmp_path / "archive.zip.part").write_bytes(b"stale bytes from another file")
        download(f"http://127.0.0.1:{server.server_address[1]}/{archive.name}", target)
        assert target.read_bytes() == archive.read_bytes()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_bad_downloads_raise_and_leave_nothing_behind(server, archive, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="sha256"):
        download(server, out / "a.zip", sha256="0" * 64)
    assert list(out.iterdir()) == []
    with pytest.raises(RuntimeError, match="404"):
        download(server.replace(archive.name, "missing.zip"), tmp_path / "b.zip")
    (archive.parent / "page.html").write_text("<html>Service unavailable</html>")
    with pytest.raises(RuntimeError, match="did not return a zip"):
        download_petimages(tmp_path / "pets", url=server.replace(archive.name, "page.html"))
    assert not (tmp_path / "pets" / ".download" / "page.html").exists()
    with pytest.raises(RuntimeError, match="failed"):
        download("http://127.0.0.1:9/nothing.zip", tmp_path / "c.zip", timeout=5)


def test_local_archive_without_download(archive, tmp_path):
    report = download_petimages(tmp_path / "pets", archive=archive)
    assert report.extracted == {"cat": 5, "dog": 4}
    not_zip = tmp_path / "not.zip"
    not_zip.write_text("nope")
    with pytest.raises(ValueError, match="not a readable zip"):
        download_petimages(tmp_path / "pets2", archive=not_zip)
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(ValueError, match="no PetImages"):
        download_petimages(tmp_path / "pets3", archive=empty)
