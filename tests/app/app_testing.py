"""Helpers shared by the app tests (fixtures are in conftest.py)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image

from app.config import AppConfig, parse_args
from app.model_holder import ServedModel
from classifier.checkpoint import Checkpoint
from classifier.predict import Predictor
from classifier.synthetic import make_image
from loop import registry

UPLOAD_LIMIT_MB = 1.0


def served(checkpoint: Checkpoint, model_id: str) -> ServedModel:
    return ServedModel(
        model_id=model_id, name=f"test {model_id}", predictor=Predictor(checkpoint), checkpoint=checkpoint
    )


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def image_bytes(class_name: str = "cat", index: int = 0, size: int = 64, fmt: str = "PNG") -> bytes:
    return encode(make_image(class_name, index, size=size), fmt)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` but carries one compressed row: how a decompression bomb or an
    absurdly large image looks before its pixels are decoded."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    row = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


def app_config(data_dir: Path, *options: str) -> AppConfig:
    """The app's options for a test, as `python -m app` parses them: any free port, no serving task and no
    automatic publishing (both would reach ClearML), then `options`."""
    quiet = ["--port", "0", "--report-interval", "0", "--publish-every-n", "0", "--publish-every-minutes", "0"]
    return parse_args(["--data-dir", str(data_dir), *quiet, *options])


def register_model(
    checkpoint: Checkpoint,
    work_dir: Path,
    project: str,
    name: str,
    tags: list[str],
    published: bool = True,
    metrics: dict | None = None,
) -> str:
    """Upload `checkpoint` to the files server and register it as a model, as the training pipeline would."""
    from clearml import InputModel, StorageManager

    path = checkpoint.save(work_dir / f"{name}.pt")
    url = StorageManager.upload_file(str(path), f"{os.environ['CLEARML_FILES_HOST']}/{project}/models/{name}.pt")
    model = InputModel.import_model(
        weights_url=url, name=name, project=project, tags=tags, create_as_published=published
    )
    if metrics:
        registry.set_metadata(model.id, metrics)
    return model.id
