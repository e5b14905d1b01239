"""The serving task: one ClearML task per app instance, where the app reports how its served model is doing.

Named `serving <host>:<port>` in the models' project and tagged `serving` and `model:<id of the model being
served>`, with that model as its input model, so the UI lists it next to the model. `app/serving_report.py`
decides what to report; this module only writes it. A quality drop tags the task `quality-drop` and logs why;
recovery removes the tag.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from clearml import Task

log = logging.getLogger(__name__)

SERVING_TAG = "serving"
DROP_TAG = "quality-drop"
MODEL_TAG_PREFIX = "model:"


class ServingTask:
    def __init__(self, project: str, name: str):
        self.task = Task.create(project_name=project, task_name=name, task_type=Task.TaskTypes.inference)
        self.task.mark_started(force=True)
        self.task.add_tags([SERVING_TAG])

    @property
    def id(self) -> str:
        return self.task.id

    def follow_model(self, model_id: str) -> None:
        """Tag the task with the model now served and link it as the task's input model."""
        tags = [tag for tag in self.task.get_tags() if not tag.startswith(MODEL_TAG_PREFIX)]
        self.task.set_tags([*tags, f"{MODEL_TAG_PREFIX}{model_id}"])
        try:
            self.task.set_input_model(model_id=model_id, update_task_design=False, update_task_labels=False)
        except Exception:  # a model served from a file, not the registry: the tag still names it
            log.warning("Model %s is not in the registry; not linked as the serving task's input", model_id)

    def report_scalars(self, iteration: int, values: Mapping[str, Mapping[str, float]]) -> None:
        """`{title: {series: value}}` at `iteration`."""
        logger = self.task.get_logger()
        for title, series in values.items():
            for name, value in series.items():
                logger.report_scalar(title, name, value, iteration)

    def report_histogram(
        self, title: str, series: str, counts: Sequence[int], labels: Sequence[str], iteration: int, axes: tuple
    ) -> None:
        xaxis, yaxis = axes
        self.task.get_logger().report_histogram(
            title, series, values=list(counts), iteration=iteration, xlabels=list(labels), xaxis=xaxis, yaxis=yaxis
        )

    def flag_drop(self, messages: Sequence[str]) -> None:
        """Tag the task `quality-drop` and log each message, or remove the tag when there are none."""
        tags = set(self.task.get_tags())
        if messages:
            for message in messages:
                self.task.get_logger().report_text(message, level=logging.WARNING)
            if DROP_TAG not in tags:
                self.task.add_tags([DROP_TAG])
        elif DROP_TAG in tags:
            self.task.set_tags(sorted(tags - {DROP_TAG}))

    def flush(self) -> None:
        self.task.get_logger().flush()

    def stop(self) -> None:
        self.task.mark_stopped(force=True)
