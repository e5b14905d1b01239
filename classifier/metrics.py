"""Classification metrics as plain Python types (JSON-, ClearML- and checkpoint-friendly)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LOG_LOSS_EPS = 1e-15
CALIBRATION_BINS = 10


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro F1, log loss, per-class precision/recall/F1/support and the confusion matrix.

    `probs[i, c]` is the probability of `classes[c]` for sample i; the prediction is its argmax.
    Confusion matrix rows are true classes, columns predicted classes. Macro F1 averages over the classes
    that occur as a true label or a prediction (a class absent from both has no defined F1).
    """
    classes = list(classes)
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError("classification_metrics needs at least one sample.")
    if probs.shape != (len(y), len(classes)):
        raise ValueError(f"probs has shape {probs.shape}, expected {(len(y), len(classes))}.")
    if y.min() < 0 or y.max() >= len(classes):
        raise ValueError("y_true holds a class index outside the class list.")

    pred = probs.argmax(axis=1)
    k = len(classes)
    confusion = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    true_positive = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(true_positive, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    present = (support > 0) | (predicted > 0)

    true_prob = np.clip(probs[np.arange(len(y)), y], LOG_LOSS_EPS, 1.0)
    return {
        "classes": classes,
        "num_samples": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1[present].mean()),
        "log_loss": float(-np.log(true_prob).mean()),
        "median_true_class_probability": float(np.median(probs[np.arange(len(y)), y])),
        "expected_calibration_error": expected_calibration_error(y, probs),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion.astype(int).tolist(),
    }


def expected_calibration_error(y_true: Sequence[int], probs: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """How far confidence is from accuracy: the predictions put in `bins` equal-width bins of their top
    probability, |accuracy - mean confidence| of each bin weighted by its share of the samples."""
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    # A top probability of exactly 1 belongs to the last bin.
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    error = 0.0
    for index in np.unique(which):
        members = which == index
        error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)
