"""The ClearML model registry as the app sees it: the served model is the newest *published* model carrying the
serving tag (default `production`) in the project; a background watcher swaps in a newer one when it appears.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from clearml import InputModel, Model

from app.model_holder import ModelHolder, ServedModel
from app.periodic import PeriodicWorker
from classifier.checkpoint import Checkpoint
from classifier.predict import Predictor
from tasks.common import production_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisteredModel:
    id: str
    name: str
    tags: list[str]
    published: bool
    metrics: dict[str, object] = field(default_factory=dict)


def load_model(model_id: str) -> ServedModel:
    model = InputModel(model_id=model_id)
    path = model.get_local_copy(raise_on_error=True)
    checkpoint = Checkpoint.load(path)
    return ServedModel(model_id=model_id, name=model.name, predictor=Predictor(checkpoint), checkpoint=checkpoint)


def model_history(project: str) -> list[RegisteredModel]:
    """Every model of the project, newest first, with the metrics stored in its metadata."""
    try:
        models = Model.query_models(project_name=project)
    except ValueError:
        return []
    return [
        RegisteredModel(
            id=model.id,
            name=model.name,
            tags=list(model.tags or []),
            published=bool(model.published),
            metrics={key: _decoded(value) for key, value in (model.get_all_metadata_casted() or {}).items()},
        )
        for model in models
    ]


def _decoded(value: object) -> object:
    """The training pipeline stores metadata values as JSON text; show them as the values they encode."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class RegistryWatcher(PeriodicWorker):
    """Keeps `holder` serving the newest published model with `tag`, polling every `interval_s` seconds."""

    thread_name = "registry-watcher"

    def __init__(self, holder: ModelHolder, project: str, tag: str, interval_s: float):
        super().__init__(interval_s)
        self.holder = holder
        self.project = project
        self.tag = tag

    def check_once(self) -> bool:
        """Load and swap in the serving model if it changed; True when a swap happened."""
        model = production_model(self.project, self.tag)
        current = self.holder.current()
        if model is None or (current is not None and current.model_id == model.id):
            return False
        served = load_model(model.id)  # the old model keeps serving while the new one loads
        self.holder.swap(served)
        log.info("Now serving model %s (%s), classes %s", served.model_id, served.name, served.classes)
        return True

    def tick(self) -> None:
        try:
            self.check_once()
        except Exception:  # a registry hiccup must not stop the app from serving the current model
            log.exception("Checking the model registry failed; keeping model %s", self.holder.current())
