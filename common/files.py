"""The one atomic file write of the project, and the fsyncs it is made of.

`atomic_write(path)` gives a temporary file in `path`'s folder (or in `tmp_dir`, which must be on the same
filesystem) and, when the block ends without an exception, renames it onto `path` in one step: a reader sees the
old file or the whole new one, never a part, and a failed write leaves the old file as it was and no temporary
file behind. Durability is chosen by the caller:

- `durable=True`: the data is fsynced before the rename and the folder after it, so once the block has ended the
  new file survives a crash of the machine or a power loss. For what cannot be made again (feedback, uploads).
- `durable=False`: no fsync; survives a crash of the process, but the operating system may lose the last writes
  on a power loss (then the old file or none is there, never a torn one on journaling filesystems). For caches
  and files that are made again from their source (embeddings, checkpoints before upload, extracted archives).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_write(path: str | Path, *, durable: bool, tmp_dir: str | Path | None = None) -> Iterator[BinaryIO]:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_folder(path.parent)


def write_atomically(path: str | Path, data: bytes, *, durable: bool, tmp_dir: str | Path | None = None) -> None:
    """`data` as the whole content of `path`, by `atomic_write`."""
    with atomic_write(path, durable=durable, tmp_dir=tmp_dir) as handle:
        handle.write(data)


def write_durably(path: str | Path, data: bytes) -> None:
    """Write and fsync a new file in place, for files staged in a folder that is itself renamed into place."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_folder(folder: str | Path) -> None:
    """Make the entries of `folder` (a rename into it, a new file) survive a power loss."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
