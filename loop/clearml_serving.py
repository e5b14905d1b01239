"""The ClearML Serving service of the production model: its control task and the `pets` endpoint
(clearml-serving 1.3.5, `custom` engine, `serving/preprocess.py` uploaded as the service's artifact).

`pets` is a static endpoint whose preprocess class answers with the registry's production model, which
`serving.production` follows and loads before using it. clearml-serving's own way, an auto-update endpoint
(``model auto-update --tags production --published``) behind a canary, was tried and measured first: every model
change made its sync thread reload the configuration, which holds every request of the process meanwhile
(it waits in steps of 1 s for the requests in flight, and new ones retry after 0.5 to 1.5 s). Requests across a
promotion and a rollback then took up to 2.0 s. It also picks the newest `created` tagged model where the
registry picks the highest promotion number, drops each new model's processor one poll after loading it, and
its sync thread dies (ZeroDivisionError in ``_update_serving_plot``) with auto-update endpoints only. The
static endpoint has none of these.

Setting up again updates the same service (found by name in the project) in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loop import registry, settings
from loop.errors import StageError

PREPROCESS = Path(__file__).resolve().parents[1] / "serving" / "preprocess.py"
SERVICE_NAME = "pets-serving"
ENDPOINT = "pets"
ENGINE = "custom"


@dataclass(frozen=True)
class ServingService:
    id: str
    endpoint: str
    production_model_id: str


def set_up(name: str = SERVICE_NAME, project: str = settings.PROJECT) -> ServingService:
    """Create or update the service ``name`` in ``project``; the endpoint starts from the production model."""
    from clearml_serving.serving.endpoints import ModelEndpoint
    from clearml_serving.serving.model_request_processor import ModelRequestProcessor

    production = registry.production_model(project)
    if production is None:
        raise StageError(f"project {project!r} has no production model yet: run the loop first (make run)")
    existing = ModelRequestProcessor.list_control_plane_tasks(name=f"^{name}$", project=project)
    if existing:
        processor = ModelRequestProcessor(task_id=existing[0]["id"])
        processor.deserialize(skip_sync=True)
    else:
        processor = ModelRequestProcessor(force_create=True, name=name, project=project)
    endpoint = ModelEndpoint(engine_type=ENGINE, serving_url=ENDPOINT, model_id=production.id)
    processor.add_endpoint(endpoint, preprocess_code=str(PREPROCESS))
    processor.serialize()
    return ServingService(processor.get_id(), ENDPOINT, production.id)
