"""The app's live quality figures on a ClearML serving task: the only module of the app's own code that reports
to ClearML (the registry and the publisher read and write models and datasets).

One task per app instance, in the models' project, named `serving <host>:<port>` and tagged `serving` and
`model:<id of the model being served>`, with that model as its input model, so the UI lists it next to the
model. Every `interval_s` it reports, per model version: agreement with feedback (all, and over the recent
window), feedback and prediction counts, feedback naming classes the model does not know, and the histogram of
top confidences. A drop below the threshold tags the task `quality-drop` and logs why; recovery removes the tag.
"""

from __future__ import annotations

import logging

from clearml import Task

from app.model_holder import ModelHolder
from app.periodic import PeriodicWorker
from app.quality import CONFIDENCE_BINS, PredictionLog, QualityThreshold

log = logging.getLogger(__name__)

SERVING_TAG = "serving"
DROP_TAG = "quality-drop"


class ServingReporter(PeriodicWorker):
    thread_name = "serving-reporter"

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
        self.task = Task.create(project_name=project, task_name=name, task_type=Task.TaskTypes.inference)
        self.task.mark_started(force=True)
        self.task.add_tags([SERVING_TAG])
        self._iteration = 0
        self._model_id: str | None = None

    @property
    def id(self) -> str:
        return self.task.id

    def report_once(self) -> None:
        self._follow_model()
        logger = self.task.get_logger()
        iteration = self._iteration
        self._iteration += 1
        alerts = []
        for model_id in self.prediction_log.models():
            quality = self.prediction_log.quality(model_id, window=self.threshold.window)
            logger.report_scalar("predictions", model_id, quality.predictions, iteration)
            logger.report_scalar("feedback", model_id, quality.agreement.feedback, iteration)
            logger.report_scalar("unknown labels", model_id, quality.unknown_labels, iteration)
            if quality.agreement.rate is not None:
                logger.report_scalar("agreement", model_id, quality.agreement.rate, iteration)
                logger.report_scalar("recent agreement", model_id, quality.recent.rate, iteration)
            logger.report_histogram(
                "confidence",
                model_id,
                values=quality.confidence_histogram,
                iteration=iteration,
                xlabels=[f"{i / CONFIDENCE_BINS:.1f}" for i in range(CONFIDENCE_BINS)],
                xaxis="top confidence",
                yaxis="predictions",
            )
            alert = self.threshold.alert(quality)
            if alert is not None:
                alerts.append(alert)
        self._flag([alert.message() for alert in alerts if alert.model_id == self._model_id])
        logger.flush()

    def tick(self) -> None:
        try:
            self.report_once()
        except Exception:  # the server being away must not stop the app; the next tick reports again
            log.exception("Reporting to the serving task failed")

    def close(self) -> None:
        self.stop()
        self.tick()
        self.task.mark_stopped(force=True)

    def _follow_model(self) -> None:
        served = self.holder.current()
        if served is None or served.model_id == self._model_id:
            return
        tags = [tag for tag in self.task.get_tags() if not tag.startswith("model:")]
        self.task.set_tags([*tags, f"model:{served.model_id}"])
        self._model_id = served.model_id
        try:
            self.task.set_input_model(model_id=served.model_id, update_task_design=False, update_task_labels=False)
        except Exception:  # a model served from a file, not the registry: the tag still names it
            log.warning("Model %s is not in the registry; not linked as the serving task's input", served.model_id)

    def _flag(self, messages: list[str]) -> None:
        tags = set(self.task.get_tags())
        if messages:
            for message in messages:
                self.task.get_logger().report_text(message, level=logging.WARNING)
            if DROP_TAG not in tags:
                self.task.add_tags([DROP_TAG])
        elif DROP_TAG in tags:
            self.task.set_tags(sorted(tags - {DROP_TAG}))
