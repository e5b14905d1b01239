"""The model registry: which model is in production, promotion as a compare-and-set, rollback, metadata, download.

**Which model is production.** Exactly one published model of the project carries the production tag once the
first model is promoted. Moving the tag takes two edits (tag the new model, untag the old one: no server call
edits two models at once), so for the moment between them two models carry it. Every reader resolves
"production" with `production_model()`, which picks the published, tagged model with the highest
`promotion_seq` (metadata set before the tag is added, one more than the previous holder's), so readers see
the old model up to the instant the new one is tagged and the new one from then on: never none, never two. A
promoter that dies between the edits leaves two tagged models; readers still agree, and the next promotion
or rollback removes the stale tag.

**Promotion** (`promote`) is a compare-and-set serialised by a server-side lock (`loop.lock.ServerLock`):

1. read the production model P and judge the candidate against P (outside the lock: judging may evaluate models);
2. take the lock, read production again; if it is no longer P, a newer promotion won the race: release and judge
   again against the new production model (up to `MAX_ROUNDS` times);
3. otherwise, if the judgement says so, publish and tag the candidate and untag the others; release.

Every judgement (which model it compared with, promote or not, why) is recorded in the candidate's metadata
(`compared_with`, `promotion`, `judgements`) and returned to the caller, which records it on its task.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from clearml import Model

from loop import settings
from loop.api import client
from loop.errors import StageError
from loop.lock import ServerLock

# A model id parameter set to this value means "no model" (train from scratch, compare against nothing);
# an empty value means "the current production model".
NO_MODEL = "none"
SEQ_KEY = "promotion_seq"
MAX_ROUNDS = 5
PROMOTION_LOCK = ".promotion-lock"  # a hidden project under the registry's project
_FIELDS = ["id", "name", "tags", "ready", "created", "labels", "metadata", "comment"]


@dataclass(frozen=True)
class RegistryModel:
    id: str
    name: str
    tags: list[str]
    published: bool
    created: datetime | None
    labels: dict[str, int]
    metadata: dict[str, Any]
    comment: str = ""

    @property
    def promotion_seq(self) -> int:
        value = self.metadata.get(SEQ_KEY)
        return value if isinstance(value, int) else 0

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> RegistryModel:
        """The model of a `models.get_all` answer as JSON (what a web page reads through the server's API)."""
        created = fields.get("created")
        return cls(
            id=fields["id"],
            name=fields.get("name") or "",
            tags=list(fields.get("tags") or []),
            published=bool(fields.get("ready")),
            created=datetime.fromisoformat(created.replace("Z", "+00:00")) if isinstance(created, str) else created,
            labels=dict(fields.get("labels") or {}),
            metadata=decode_metadata(fields.get("metadata")),
            comment=fields.get("comment") or "",
        )


class Decision(Protocol):
    """What a judge returns, e.g. the classifier's `PromotionDecision`."""

    promote: bool
    reason: str


@dataclass(frozen=True)
class Judgement:
    """One comparison of a candidate with the production model of that moment (None: there was none)."""

    compared_with: str | None
    promote: bool
    reason: str


@dataclass
class PromotionRecord:
    candidate_id: str
    promoted: bool
    reason: str
    compared_with: str | None
    previous_production: list[str] = field(default_factory=list)
    judgements: list[Judgement] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "model_id": self.candidate_id,
            "promoted": self.promoted,
            "reason": self.reason,
            "compared_with": self.compared_with,
            "previous_production": self.previous_production,
            "judgements": [vars(judgement) for judgement in self.judgements],
        }


# ---------------------------------------------------------------------------------------------- metadata


def encode_metadata(values: Mapping[str, Any]) -> list[dict[str, str]]:
    """Metadata entries for the server: strings as they are, anything else as JSON (type `json`)."""
    return [
        {"key": key, "type": "str", "value": value}
        if isinstance(value, str)
        else {"key": key, "type": "json", "value": json.dumps(value)}
        for key, value in values.items()
    ]


def decode_metadata(entries: Mapping[str, Mapping[str, str]] | None) -> dict[str, Any]:
    """The values `encode_metadata` stored (entries of another type stay the strings they are)."""
    decoded = {}
    for key, entry in (entries or {}).items():
        value = entry.get("value")
        decoded[key] = json.loads(value) if entry.get("type") == "json" and value is not None else value
    return decoded


def set_metadata(model_id: str, values: Mapping[str, Any]) -> None:
    """Add or replace these metadata entries of the model, readable in the UI and by `decode_metadata`."""
    client().models.add_or_update_metadata(model=model_id, metadata=encode_metadata(values))


# ----------------------------------------------------------------------------------------------- lookups


def _project_id(project: str) -> str | None:
    # Not Task.get_project_id: it answers None on any error, which would read as "no production model".
    found = client().projects.get_all(name=f"^{re.escape(project)}$", search_hidden=True, only_fields=["id"])
    return found[0].id if found else None


def _as_model(raw) -> RegistryModel:
    return RegistryModel(
        id=raw.id,
        name=raw.name or "",
        tags=list(raw.tags or []),
        published=bool(raw.ready),
        created=raw.created,
        labels=dict(raw.labels or {}),
        metadata=decode_metadata(raw.metadata),
        comment=raw.comment or "",
    )


def list_models(
    project: str = settings.PROJECT,
    tag: str | None = None,
    published_only: bool = False,
    include_archived: bool = False,
) -> list[RegistryModel]:
    """Models of the project (with `tag`, published only, ...), newest first; [] when the project does not exist."""
    project_id = _project_id(project)
    if not project_id:
        return []
    query: dict[str, Any] = {"project": [project_id], "only_fields": _FIELDS, "order_by": ["-created"]}
    if tag:
        query["tags"] = [tag]
    if published_only:
        query["ready"] = True
    if not include_archived:
        query["system_tags"] = ["-archived"]
    return [_as_model(raw) for raw in client().models.get_all(**query)]


def find_model(model_id: str) -> RegistryModel:
    found = client().models.get_all(id=[model_id], only_fields=_FIELDS)
    if not found:
        raise StageError(f"model {model_id!r} not found")
    return _as_model(found[0])


def production_model(project: str = settings.PROJECT, tag: str = settings.PRODUCTION_TAG) -> RegistryModel | None:
    """The production model: of the published models carrying `tag`, the one promoted last (None before the first)."""
    return pick_production(list_models(project, tag, published_only=True))


def pick_production(tagged: Iterable[RegistryModel]) -> RegistryModel | None:
    """The rule for which of the models carrying the production tag is production: of the published ones, the one
    promoted last (highest `promotion_seq`), so the moment a promotion moves the tag (two edits) shows one model."""
    return max((model for model in tagged if model.published), key=_promotion_order, default=None)


def _promotion_order(model: RegistryModel) -> tuple:
    # Models tagged before promotion_seq existed count as 0; among equals the newest wins.
    created = model.created.timestamp() if model.created else float("-inf")
    return model.promotion_seq, created, model.id


def resolve_model_id(value: str, project: str = settings.PROJECT) -> str | None:
    """Model id parameter -> id: empty means the current production model, `none` means no model."""
    value = (value or "").strip()
    if value.lower() == NO_MODEL:
        return None
    if value:
        return value
    current = production_model(project)
    return current.id if current else None


def download_model(model_id: str) -> Path:
    """Local copy of a model's weights file (cached by the SDK)."""
    try:
        path = Model(model_id=model_id).get_local_copy(raise_on_error=True)
    except ValueError as error:
        raise StageError(f"model {model_id}: cannot download its weights: {error}") from error
    if not path:
        raise StageError(f"model {model_id} has no downloadable weights")
    return Path(path)


def load_checkpoint(model_id: str):
    from classifier.checkpoint import Checkpoint

    return Checkpoint.load(download_model(model_id))


# ------------------------------------------------------------------------------------ promotion, rollback


def promotion_lock(project: str, purpose: str) -> ServerLock:
    return ServerLock(f"{project}/{PROMOTION_LOCK}", purpose=purpose)


def promote(
    candidate_id: str,
    judge: Callable[[RegistryModel | None], Decision],
    project: str = settings.PROJECT,
    tag: str = settings.PRODUCTION_TAG,
    max_rounds: int = MAX_ROUNDS,
) -> PromotionRecord:
    """Judge `candidate_id` against the production model and promote it if the judgement says so (see the module
    docstring). `judge(production)` is called again whenever another promotion wins the race."""
    judgements: list[Judgement] = []
    for _ in range(max_rounds):
        production = production_model(project, tag)
        compared_with = production.id if production else None
        if compared_with == candidate_id:  # a retried run whose promotion went through before
            return PromotionRecord(candidate_id, True, "already the production model", None, [], judgements)
        decision = judge(production)
        judgements.append(Judgement(compared_with, bool(decision.promote), str(decision.reason)))
        with promotion_lock(project, f"promote {candidate_id}"):
            now = production_model(project, tag)
            if (now.id if now else None) != compared_with:
                continue  # a newer promotion won the race: judge again against it
            previous = _move_tag(candidate_id, now, project, tag) if decision.promote else []
            record = PromotionRecord(
                candidate_id, bool(decision.promote), str(decision.reason), compared_with, previous, judgements
            )
            _record(record)
            return record
    raise StageError(
        f"production changed {max_rounds} times while model {candidate_id} was being judged; "
        f"judgements: {[vars(j) for j in judgements]}"
    )


def _record(record: PromotionRecord) -> None:
    verdict = "promoted" if record.promoted else "not promoted"
    set_metadata(
        record.candidate_id,
        {
            "compared_with": record.compared_with or "",
            "promotion": f"{verdict}: {record.reason}",
            "judgements": [vars(judgement) for judgement in record.judgements],
        },
    )
    model = find_model(record.candidate_id)
    client().models.edit(model=model.id, comment=f"{model.comment}\n{verdict}: {record.reason}".strip())


def _move_tag(target_id: str, current: RegistryModel | None, project: str, tag: str) -> list[str]:
    """Publish `target_id` and make it the production model; returns the ids that lost the tag. Call under the lock.

    Order matters for readers (see the module docstring): the promotion number first, then publish, then the
    tag, and only then the tag comes off the others.
    """
    api = client()
    set_metadata(target_id, {SEQ_KEY: (current.promotion_seq if current else 0) + 1})
    target = find_model(target_id)
    if not target.published:
        Model(model_id=target_id).publish()
    api.models.edit(model=target_id, tags=sorted({*target.tags, tag} - {settings.CANDIDATE_TAG}))
    previous = []
    for other in list_models(project, tag, include_archived=True):
        if other.id != target_id:
            api.models.edit(model=other.id, tags=[t for t in other.tags if t != tag])
            previous.append(other.id)
    return previous


def rollback(project: str = settings.PROJECT, tag: str = settings.PRODUCTION_TAG) -> tuple[str, str]:
    """Move production back to the newest published model created before the current one; running it again steps
    back further. Same lock and tag order as a promotion. Returns (id that lost production, id that has it now)."""
    with promotion_lock(project, "rollback"):
        current = production_model(project, tag)
        if current is None:
            raise StageError(f"no production model in project {project!r}: nothing to roll back")
        older = [
            model
            for model in list_models(project, published_only=True)
            if model.id != current.id and model.created and current.created and model.created < current.created
        ]
        if not older:
            raise StageError(f"production model {current.id} has no earlier published model to roll back to")
        target = max(older, key=lambda model: model.created)
        reason = f"production again after rollback from {current.id}"
        _move_tag(target.id, current, project, tag)
        set_metadata(target.id, {"compared_with": current.id, "promotion": reason})
        client().models.edit(model=target.id, comment=f"{target.comment}\n{reason}".strip())
    return current.id, target.id
