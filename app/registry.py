"""The ClearML model registry as the app sees it: the served model is the project's production model as
`loop.registry.production_model` resolves it (the published model promoted last with the serving tag, default
`production`); a background watcher swaps in a newer one when it appears.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from app.model_holder import ModelHolder, ServedModel
from app.periodic import PeriodicWorker
from classifier.checkpoint import Checkpoint
from classifier.predict import Predictor
from loop import registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisteredModel:
    id: str
    name: str
    tags: list[str]
    published: bool
    metrics: dict[str, object] = field(default_factory=dict)


def load_model(model_id: str) -> ServedModel:
    checkpoint = Checkpoint.load(registry.download_model(model_id))
    name = registry.find_model(model_id).name
    return ServedModel(model_id=model_id, name=name, predictor=Predictor(checkpoint), checkpoint=checkpoint)


def model_history(project: str) -> list[RegisteredModel]:
    """Every model of the project, newest first, with the metrics stored in its metadata."""
    return [
        RegisteredModel(
            id=model.id, name=model.name, tags=model.tags, published=model.published, metrics=model.metadata
        )
        for model in registry.list_models(project)
    ]


class RegistryWatcher(PeriodicWorker):
    """Keeps `holder` serving the newest published model with `tag`, polling every `interval_s` seconds."""

    thread_name = "app-registry-watcher"

    def __init__(self, holder: ModelHolder, project: str, tag: str, interval_s: float):
        super().__init__(interval_s)
        self.holder = holder
        self.project = project
        self.tag = tag

    def check_once(self) -> bool:
        """Load and swap in the serving model if it changed; True when a swap happened."""
        model = registry.production_model(self.project, self.tag)
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
