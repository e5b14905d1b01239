"""The promotion gate: may a candidate replace the production model?

Two rules, both on the same files (see `evaluate.compare_on_shared_classes`):
- accuracy: the candidate may be worse than production by at most `tolerance`;
- log loss, a proper scoring rule: the candidate's may be higher by at most `log_loss_tolerance` nats. On a small
  validation split both models often score accuracy 1.0 and accuracy cannot tell them apart; log loss still
  can: a model that is right but unsure (or confidently wrong on one file) scores worse than a calibrated one.
  The default, 0.05 nats, is an average loss of ~5 % of the true-class probability per file: below it, two
  models differ by less than the split's own noise on a few dozen files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_LOG_LOSS_TOLERANCE = 0.05


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def decide_promotion(
    candidate_metrics: dict,
    production_metrics: dict | None,
    tolerance: float,
    log_loss_tolerance: float = DEFAULT_LOG_LOSS_TOLERANCE,
) -> PromotionDecision:
    """Promote when there is no production model, or when the candidate passes both rules (module docstring).
    Metrics without a log loss (recorded before the gate judged it) are judged on accuracy alone, said so."""
    _check_tolerance("tolerance", tolerance, 1.0)
    _check_tolerance("log_loss_tolerance", log_loss_tolerance, math.inf)
    candidate = _metric(candidate_metrics, "candidate", "accuracy")
    if production_metrics is None:
        return PromotionDecision(True, f"No production model yet; candidate accuracy {candidate:.4f}.")
    production = _metric(production_metrics, "production", "accuracy")
    shared = candidate_metrics.get("shared_classes") or production_metrics.get("shared_classes")
    on = f" on shared classes {shared}" if shared else ""
    figures = f"candidate accuracy {candidate:.4f} vs production {production:.4f}, tolerance {tolerance:.4f}"
    losses = _log_losses(candidate_metrics, production_metrics)
    if losses is None:
        figures += "; no log loss to compare"
    else:
        figures += f"; log loss {losses[0]:.4f} vs {losses[1]:.4f}, tolerance {log_loss_tolerance:.4f}"
    figures += on
    if candidate < production - tolerance:
        return PromotionDecision(False, f"Not promoted: {figures} (accuracy worse by {production - candidate:.4f}).")
    if losses is not None and losses[0] > losses[1] + log_loss_tolerance:
        return PromotionDecision(False, f"Not promoted: {figures} (log loss worse by {losses[0] - losses[1]:.4f}).")
    return PromotionDecision(True, f"Promoted: {figures}.")


def _check_tolerance(name: str, value, highest: float) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= highest):  # NaN too
        bound = f"between 0 and {highest}" if math.isfinite(highest) else "0 or more"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}.")


def _metric(metrics: dict, which: str, name: str) -> float:
    value = metrics.get(name) if isinstance(metrics, dict) else None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"The {which} metrics have no valid {name!r}: {value!r}.")
    return float(value)


def _log_losses(candidate_metrics: dict, production_metrics: dict) -> tuple[float, float] | None:
    if "log_loss" not in candidate_metrics or "log_loss" not in production_metrics:
        return None
    return _metric(candidate_metrics, "candidate", "log_loss"), _metric(production_metrics, "production", "log_loss")
