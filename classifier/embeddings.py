"""On-disk cache of backbone embeddings, so `head` training only embeds images it has not seen before.

An embedding depends on the image content, the backbone weights and the preprocessing (input size and
normalisation), and on nothing else: the key is (file sha256, namespace) where the namespace names the
backbone, the input size and a fingerprint of the exact weights.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from classifier.backbones import weights_fingerprint
from classifier.data import LabeledFile
from classifier.model import ImageClassifier
from classifier.preprocess import ImageFileDataset, eval_transform, make_loader
from common.files import atomic_write

DEFAULT_CACHE_DIR = (
    Path(os.environ.get("CLASSIFIER_CACHE_DIR", Path.home() / ".cache" / "selfimproving-classifier")) / "embeddings"
)


def cache_namespace(model: ImageClassifier, input_size: int) -> str:
    return f"{model.spec.name}-{input_size}px-{weights_fingerprint(model.features)[:16]}"


class EmbeddingCache:
    """One small .npy file per (namespace, content hash); writes are atomic, so concurrent runs can share it."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def _path(self, namespace: str, sha256: str) -> Path:
        return self.directory / namespace / sha256[:2] / f"{sha256}.npy"

    def get(self, namespace: str, sha256: str) -> np.ndarray | None:
        path = self._path(namespace, sha256)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # missing, or damaged by a crash of another writer
            return None

    def put(self, namespace: str, sha256: str, vector: np.ndarray) -> None:
        path = self._path(namespace, sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A cache: made again from the image if a power loss takes it.
        with atomic_write(path, durable=False) as handle:
            np.save(handle, np.asarray(vector, dtype=np.float32), allow_pickle=False)


def compute_embeddings(
    model: ImageClassifier,
    root: str | Path,
    files: Sequence[LabeledFile],
    input_size: int,
    cache: EmbeddingCache | None,
    device: torch.device,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, dict]:
    """Embeddings [len(files), feature_dim] in `files` order (frozen backbone, eval mode, no augmentation).

    Returns the array and stats: how many came from the cache and how many were computed, with the rate.
    """
    namespace = cache_namespace(model, input_size)
    vectors: dict[str, np.ndarray] = {}
    if cache is not None:
        for f in files:
            if f.sha256 not in vectors and (hit := cache.get(namespace, f.sha256)) is not None:
                vectors[f.sha256] = hit
    cached = len(vectors)

    todo = list({f.sha256: f for f in files if f.sha256 not in vectors}.values())
    started = time.perf_counter()
    if todo:
        spec = model.spec
        transform = eval_transform(input_size, spec.mean, spec.std)
        dataset = ImageFileDataset(root, todo, sorted({f.label for f in todo}), transform)
        loader = make_loader(dataset, batch_size, shuffle=False, num_workers=num_workers, device=device)
        model.eval().to(device)
        position = 0
        # fp32 even on CUDA: cached vectors must match what the fp32 served model computes.
        with torch.inference_mode():
            for images, _ in tqdm(loader, desc="embedding", disable=not progress, leave=False):
                images = images.to(device, non_blocking=True)
                if device.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                batch = model.embed(images).float().cpu().numpy()
                for vector in batch:
                    item = todo[position]
                    vectors[item.sha256] = vector
                    if cache is not None:
                        cache.put(namespace, item.sha256, vector)
                    position += 1
    elapsed = time.perf_counter() - started
    stats = {
        "embeddings_cached": cached,
        "embeddings_computed": len(todo),
        "embedding_seconds": elapsed,
        "embedding_images_per_s": len(todo) / elapsed if todo and elapsed > 0 else 0.0,
    }
    if not files:
        return np.zeros((0, model.spec.feature_dim), dtype=np.float32), stats
    return np.stack([vectors[f.sha256] for f in files]).astype(np.float32), stats
