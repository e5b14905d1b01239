"""Fileserver routes under ``/files``: multipart upload (field name = object path), GET/HEAD (streamed), DELETE.

Object paths are resolved inside the store root (a leading ``/`` is relative to it); ``..``, drive letters and
symlinks that lead outside are refused.
Uploads stream to temporary files in a folder outside the served tree (emptied at start, never served). Only
once the whole body has arrived is each file fsynced and renamed into place, then its folder fsynced: an upload
that fails midway stores none of its parts.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from common.files import fsync_folder

from .errors import bad_request

CHUNK = 1024 * 1024
LEGACY_TEMP_NAME = re.compile(r"\.upload-[a-z0-9_]{8}")  # mkstemp names older versions used inside the tree

log = logging.getLogger("localserver")


class FileStore:
    def __init__(self, root: Path, tmp_dir: Path):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = tmp_dir.resolve()
        self._sweep()

    def _sweep(self) -> None:
        """Remove what interrupted uploads left: the temp folder's content and legacy temp files in the tree."""
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.rglob(".upload-*"):
            if LEGACY_TEMP_NAME.fullmatch(leftover.name) and leftover.is_file() and not leftover.is_symlink():
                log.info("removing an interrupted upload's temp file %s", leftover)
                leftover.unlink()

    def resolve(self, object_path: str) -> Path:
        """The absolute file for ``object_path``, refusing anything that leaves the store."""
        # The SDK names objects "/project/task.id/..."; a leading slash is relative to the store root.
        path = unquote(object_path or "")
        parts = path.replace("\\", "/").split("/")
        if not path.strip("/") or "\x00" in path or ".." in parts or ":" in parts[0]:
            raise bad_request(f"Invalid file path: {object_path!r}")
        target = self.root.joinpath(*[p for p in parts if p not in ("", ".")]).resolve()
        if not target.is_relative_to(self.root) or target == self.root:
            raise bad_request(f"Invalid file path: {object_path!r}")
        return target

    def delete(self, object_path: str) -> bool:
        target = self.resolve(object_path)
        if not target.is_file():
            return False
        target.unlink()
        return True

    def delete_many(self, body: bytes) -> list[str]:
        """``POST /files/delete_many`` with ``{"files": [path, ...]}``: the paths that existed and were deleted."""
        try:
            request = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise bad_request("delete_many body is not valid JSON") from None
        paths = request.get("files") if isinstance(request, dict) else None
        if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
            raise bad_request('delete_many body must be {"files": ["path", ...]}')
        return [path for path in paths if self.delete(path)]


class MultipartUpload:
    """Feeds request body chunks to a streaming multipart parser that writes each part to a temp file;
    :meth:`finish` moves them all into place, :meth:`abort` removes them."""

    def __init__(self, store: FileStore, content_type: str, prefix: str = ""):
        kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise bad_request("Upload must be multipart/form-data with a boundary")
        self._store = store
        self._prefix = prefix.strip("/")
        self._header_field = b""
        self._headers: dict[bytes, bytes] = {}
        self._file = None
        self._parts: list[tuple[Path, Path]] = []  # (temp file, target), complete parts only
        self._current: tuple[Path, Path] | None = None
        self.stored: list[str] = []
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field_data,
                "on_header_value": self._header_value_data,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def _part_begin(self) -> None:
        self._headers = {}
        self._header_field = b""

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        if self._header_field in self._headers:
            self._header_field = b""
        self._header_field += data[start:end].lower()
        self._headers.setdefault(self._header_field, b"")

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._headers[self._header_field] = self._headers.get(self._header_field, b"") + data[start:end]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise bad_request("Multipart field without a name")
        object_path = f"{self._prefix}/{name}" if self._prefix else name
        target = self._store.resolve(object_path)
        fd, tmp = tempfile.mkstemp(dir=self._store.tmp_dir, prefix="upload-")
        self._file, self._current = os.fdopen(fd, "wb"), (Path(tmp), target)
        self.stored.append(object_path)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._file.write(data[start:end])

    def _part_end(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        self._parts.append(self._current)
        self._current = None

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise bad_request(f"Malformed multipart upload: {exc}") from None

    def finish(self) -> list[str]:
        """Check the body was complete, then move every part into place (fsynced)."""
        try:
            self._parser.finalize()
        except FormParserError as exc:
            raise bad_request(f"Malformed multipart upload: {exc}") from None
        if self._file is not None:
            raise bad_request("Truncated multipart upload")
        if not self._parts:
            raise bad_request("Upload contained no file")
        folders = set()
        while self._parts:
            tmp, target = self._parts.pop(0)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            folders.add(target.parent)
        for folder in folders:
            fsync_folder(folder)
        return self.stored

    def abort(self) -> None:
        """Remove every temp file of this upload (nothing has been moved into the store yet)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for tmp, _ in self._parts + ([self._current] if self._current else []):
            tmp.unlink(missing_ok=True)
        self._parts, self._current = [], None


def content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"
