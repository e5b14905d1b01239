"""Fileserver routes under ``/files``: multipart upload (field name = object path), GET/HEAD (streamed), DELETE.

Object paths are resolved inside the store root (a leading ``/`` is relative to it); ``..``, drive letters and
symlinks that lead outside are refused.
Uploads are streamed to a temporary file next to the target and renamed into place once complete.
"""

from __future__ import annotations

import mimetypes
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from .errors import ApiError, bad_request

CHUNK = 1024 * 1024


class FileStore:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

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


class MultipartUpload:
    """Feeds request body chunks to a streaming multipart parser that writes each part to disk."""

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
        self._tmp_path: Path | None = None
        self._target: Path | None = None
        self._error: ApiError | None = None
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
        self._target = self._store.resolve(object_path)
        self._target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._target.parent, prefix=".upload-")
        self._file, self._tmp_path = os.fdopen(fd, "wb"), Path(tmp)
        self.stored.append(object_path)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._file.write(data[start:end])

    def _part_end(self) -> None:
        self._file.close()
        os.replace(self._tmp_path, self._target)
        self._file = self._tmp_path = None

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise bad_request(f"Malformed multipart upload: {exc}") from None

    def finish(self) -> list[str]:
        try:
            self._parser.finalize()
        except FormParserError as exc:
            raise bad_request(f"Malformed multipart upload: {exc}") from None
        if self._file is not None:
            self.abort()
            raise bad_request("Truncated multipart upload")
        if not self.stored:
            raise bad_request("Upload contained no file")
        return self.stored

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._tmp_path.unlink(missing_ok=True)
            self._file = None


def content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"
