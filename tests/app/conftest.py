"""Small real models (trained in seconds on generated images) and a running app for the app tests."""

from __future__ import annotations

import pytest
from app_testing import UPLOAD_LIMIT_MB, app_config, served

from app.application import create_app
from classifier.checkpoint import Checkpoint
from classifier.data import scan_folder
from classifier.synthetic import make_image_folder
from classifier.train import TrainConfig, train


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
    """(app, url): the app as `python -m app` wires it, serving the cat/dog model; it makes no ClearML call."""
    config = app_config(tmp_path / "feedback", "--max-upload-mb", str(UPLOAD_LIMIT_MB))
    app = create_app(config, None, model=served(checkpoints["two"], "model-two"))
    with app, app.serve(background=True, quiet=True) as server:
        yield app, server.url
