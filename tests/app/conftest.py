"""Small real models (trained in seconds on generated images) and a running app for the app tests."""

from __future__ import annotations

import pytest
import torch
from app_testing import UPLOAD_LIMIT_MB, launch, served

from app.__main__ import build, parse_args
from classifier.checkpoint import Checkpoint
from classifier.data import scan_folder
from classifier.synthetic import make_image_folder
from classifier.train import TrainConfig, train


@pytest.fixture(autouse=True)
def _torch_threads():
    """`build` keeps the threads that start torch work later to one torch thread each: not beyond the test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Checkpoint]:
    """`two`: cat/dog, `three`: cat/dog/rabbit; a linear head on the pretrained backbone's embeddings."""
    work = tmp_path_factory.mktemp("train")
    root = make_image_folder(work / "images", ["cat", "dog", "rabbit"], per_class=8, size=64)
    files = scan_folder(root)
    config = TrainConfig(
        mode="head",
        epochs=5,
        batch_size=8,
        num_workers=0,
        device="cpu",
        progress=False,
        embedding_cache_dir=str(work / "embeddings"),
    )
    two = [f for f in files if f.label != "rabbit"]
    return {
        "two": train(config, root, two, two, ["cat", "dog"], dataset_id="dataset-two").checkpoint,
        "three": train(config, root, files, files, ["cat", "dog", "rabbit"], dataset_id="dataset-three").checkpoint,
    }


@pytest.fixture
def local_app(tmp_path, checkpoints):
    """The app as `python -m app` wires it, serving the cat/dog model; it makes no ClearML call."""
    args = parse_args(["--data-dir", str(tmp_path / "feedback"), "--max-upload-mb", str(UPLOAD_LIMIT_MB)])
    ui, _watcher, _auto_publisher = build(args)
    ui.service.holder.swap(served(checkpoints["two"], "model-two"))
    demo, url = launch(ui)
    yield ui, url
    demo.close()
