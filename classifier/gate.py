"""The promotion gate: may a candidate replace the production model?"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def decide_promotion(candidate_metrics: dict, production_metrics: dict | None, tolerance: float) -> PromotionDecision:
    """Promote when there is no production model, or when the candidate's accuracy on the shared classes is at
    least the production accuracy minus `tolerance` (both measured on the same files, see
    `evaluate.compare_on_shared_classes`)."""
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and 0 <= tolerance <= 1):
        raise ValueError(f"tolerance must be a number between 0 and 1, got {tolerance!r}.")
    candidate = _accuracy(candidate_metrics, "candidate")
    if production_metrics is None:
        return PromotionDecision(True, f"No production model yet; candidate accuracy {candidate:.4f}.")
    production = _accuracy(production_metrics, "production")
    shared = candidate_metrics.get("shared_classes") or production_metrics.get("shared_classes")
    on = f" on shared classes {shared}" if shared else ""
    figures = f"candidate accuracy {candidate:.4f} vs production {production:.4f}{on}, tolerance {tolerance:.4f}"
    if candidate >= production - tolerance:
        return PromotionDecision(True, f"Promoted: {figures}.")
    return PromotionDecision(False, f"Not promoted: {figures} (worse by {production - candidate:.4f}).")


def _accuracy(metrics: dict, which: str) -> float:
    value = metrics.get("accuracy") if isinstance(metrics, dict) else None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"The {which} metrics have no valid 'accuracy': {value!r}.")
    return float(value)
