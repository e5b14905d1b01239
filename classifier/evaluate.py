"""Evaluating checkpoints on labelled files, including an old model against a candidate that knows more classes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from classifier.checkpoint import Checkpoint
from classifier.data import LabeledFile
from classifier.embeddings import EmbeddingCache, compute_embeddings
from classifier.metrics import classification_metrics
from classifier.preprocess import ImageFileDataset, eval_transform, make_loader
from classifier.runtime import resolve_device
from classifier.train import predict_loader


def evaluate_checkpoint(
    ckpt: Checkpoint,
    root: str | Path,
    files: Sequence[LabeledFile],
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    cache: EmbeddingCache | None = None,
) -> dict:
    """Metrics of `ckpt` on the files whose label it knows; files of other classes are counted, not scored.

    Predictions are the argmax over all of the checkpoint's classes, so a model that predicts a class it knows
    for an image of another known class is wrong, as it would be in production.

    With a `cache`, the backbone output comes from the embedding cache (keyed by the exact backbone weights), so
    a head-mode model whose embeddings the training step cached is scored without a backbone forward pass.
    """
    known = set(ckpt.classes)
    scored = [f for f in files if f.label in known]
    if not scored:
        raise ValueError(f"None of the {len(files)} files has a label the model knows ({ckpt.classes}).")
    dev = resolve_device(device)
    model = ckpt.build_model().to(dev)
    if cache is None:
        dataset = ImageFileDataset(root, scored, ckpt.classes, eval_transform(ckpt.input_size, ckpt.mean, ckpt.std))
        probs = np.asarray(predict_loader(model, make_loader(dataset, batch_size, False, num_workers, dev), dev))
    else:
        embeddings, _ = compute_embeddings(model, root, scored, ckpt.input_size, cache, dev, progress=False)
        with torch.inference_mode():
            logits = model.classify(torch.from_numpy(embeddings).to(dev))
            probs = torch.softmax(logits.float(), dim=1).cpu().numpy().astype(np.float64)
    index = {name: i for i, name in enumerate(ckpt.classes)}
    metrics = classification_metrics([index[f.label] for f in scored], probs, ckpt.classes)
    metrics["num_unknown_label"] = len(files) - len(scored)
    return metrics


def compare_on_shared_classes(
    candidate_ckpt: Checkpoint,
    production_ckpt: Checkpoint,
    root: str | Path,
    files: Sequence[LabeledFile],
    **kwargs,
) -> tuple[dict, dict, list[str]]:
    """Evaluate both models on the same files: those labelled with a class both models know.

    Returns (candidate metrics, production metrics, shared classes in the candidate's order).
    """
    production = set(production_ckpt.classes)
    shared = [c for c in candidate_ckpt.classes if c in production]
    if not shared:
        raise ValueError(
            f"The candidate ({candidate_ckpt.classes}) and production ({production_ckpt.classes}) models "
            "have no class in common."
        )
    shared_set = set(shared)
    subset = [f for f in files if f.label in shared_set]
    if not subset:
        raise ValueError(f"No validation file is labelled with a shared class {shared}.")
    candidate = evaluate_checkpoint(candidate_ckpt, root, subset, **kwargs)
    prod = evaluate_checkpoint(production_ckpt, root, subset, **kwargs)
    for metrics in (candidate, prod):
        metrics["shared_classes"] = shared
    return candidate, prod, shared
