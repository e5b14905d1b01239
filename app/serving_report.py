"""The app's live quality figures, reported every `interval_s` to its serving task (`loop.serving`).

Per model version: agreement with feedback (all, and over the recent window), feedback and prediction counts,
feedback naming classes the model does not know, and the histogram of top confidences. A drop of the served
model below the threshold flags the task.
"""

from __future__ import annotations

import logging

from app.model_holder import ModelHolder
from app.periodic import PeriodicWorker
from app.quality import CONFIDENCE_BINS, PredictionLog, QualityThreshold
from loop.serving import ServingTask

log = logging.getLogger(__name__)


class ServingReporter(PeriodicWorker):
    thread_name = "app-serving-reporter"

    def __init__(
        self,
        prediction_log: PredictionLog,
        holder: ModelHolder,
        project: str,
        name: str,
        threshold: QualityThreshold,
        interval_s: float = 60.0,
    ):
        super().__init__(interval_s)
        self.prediction_log = prediction_log
        self.holder = holder
        self.threshold = threshold
        self.serving_task = ServingTask(project, name)
        self._iteration = 0
        self._model_id: str | None = None

    @property
    def id(self) -> str:
        return self.serving_task.id

    def report_once(self) -> None:
        served = self.holder.current()
        if served is not None and served.model_id != self._model_id:
            self.serving_task.follow_model(served.model_id)
            self._model_id = served.model_id
        iteration = self._iteration
        self._iteration += 1
        alerts = []
        for model_id in self.prediction_log.models():
            quality = self.prediction_log.quality(model_id, window=self.threshold.window)
            values = {
                "predictions": quality.predictions,
                "feedback": quality.agreement.feedback,
                "unknown labels": quality.unknown_labels,
            }
            if quality.agreement.rate is not None:
                values.update({"agreement": quality.agreement.rate, "recent agreement": quality.recent.rate})
            self.serving_task.report_scalars(iteration, {title: {model_id: value} for title, value in values.items()})
            self.serving_task.report_histogram(
                "confidence",
                model_id,
                quality.confidence_histogram,
                [f"{i / CONFIDENCE_BINS:.1f}" for i in range(CONFIDENCE_BINS)],
                iteration,
                axes=("top confidence", "predictions"),
            )
            alert = self.threshold.alert(quality)
            if alert is not None:
                alerts.append(alert)
        self.serving_task.flag_drop([alert.message() for alert in alerts if alert.model_id == self._model_id])
        self.serving_task.flush()

    def tick(self) -> None:
        try:
            self.report_once()
        except Exception:  # the server being away must not stop the app; the next tick reports again
            log.exception("Reporting to the serving task failed")

    def close(self) -> None:
        self.stop()
        self.tick()
        self.serving_task.stop()
