"""Shared fixtures: generated cat/dog(/rabbit) folders at 64 px and models trained on them once per session."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

from classifier import synthetic
from classifier.data import prepare_split
from classifier.train import TrainConfig, train

IMAGE_SIZE = 64


@pytest.fixture(scope="session", autouse=True)
def _cpu_threads():
    """CI has 2 cores; more threads than cores only adds contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(before)


def _small_config(tmp_dir, **overrides) -> TrainConfig:
    """Pretrained EfficientNet-Lite0 (offline weights) on 64 px images: fast and reliable on a CPU."""
    base = TrainConfig(
        backbone="efficientnet_lite0",
        pretrained=True,
        epochs=3,
        batch_size=16,
        image_size=IMAGE_SIZE,
        num_workers=0,
        device="cpu",
        progress=False,
        embedding_cache_dir=str(tmp_dir / "embeddings"),
    )
    return replace(base, **overrides)


@pytest.fixture
def small_config(tmp_path):
    """small_config(**overrides) -> TrainConfig with its embedding cache under this test's tmp_path."""
    return lambda **overrides: _small_config(tmp_path, **overrides)


@pytest.fixture(scope="session")
def cat_dog(tmp_path_factory):
    root = synthetic.make_image_folder(tmp_path_factory.mktemp("catdog"), ("cat", "dog"), per_class=30, size=64)
    manifest, _ = prepare_split(root, dataset_id="ds-catdog")
    return root, manifest


@pytest.fixture(scope="session")
def cat_dog_rabbit(tmp_path_factory):
    root = synthetic.make_image_folder(
        tmp_path_factory.mktemp("catdograbbit"), ("cat", "dog", "rabbit"), per_class=30, size=64
    )
    manifest, _ = prepare_split(root, dataset_id="ds-catdograbbit")
    return root, manifest


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="session")
def session_config(session_dir):
    """Like small_config, but sharing one embedding cache across the session (what the trained fixtures use)."""
    return lambda **overrides: _small_config(session_dir, **overrides)


@pytest.fixture(scope="session")
def full_result(cat_dog, session_config):
    root, manifest = cat_dog
    return train(
        session_config(mode="full"),
        root,
        manifest.train,
        manifest.val,
        manifest.classes,
        dataset_id=manifest.dataset_id,
    )


@pytest.fixture(scope="session")
def head_result(cat_dog, session_config):
    root, manifest = cat_dog
    return train(
        session_config(mode="head", epochs=10),
        root,
        manifest.train,
        manifest.val,
        manifest.classes,
        dataset_id=manifest.dataset_id,
    )
