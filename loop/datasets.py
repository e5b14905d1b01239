"""Dataset versions: the newest one, a local copy, and new (child) versions.

A version is a ClearML dataset task; "finalized" means completed (or published/closed), which is what the
retraining trigger reacts to.
"""

from __future__ import annotations

import logging
from pathlib import Path

from clearml import Dataset, Task

from loop import sdk_private, settings
from loop.errors import StageError

log = logging.getLogger(__name__)

FINALIZED = ("completed", "published", "closed")


def latest_version_id(project: str = settings.DATASET_PROJECT, name: str = settings.DATASET_NAME) -> str | None:
    """Id of the newest finalized version of the dataset, or None when there is none yet."""
    try:
        return Dataset.get(dataset_project=project, dataset_name=name, only_completed=True).id
    except ValueError:
        return None


def local_copy(dataset_id: str) -> Path:
    """Local read-only copy of a dataset version with its whole parent chain merged (cached by the SDK)."""
    try:
        dataset = Dataset.get(dataset_id=dataset_id)
    except ValueError as error:
        raise StageError(f"dataset {dataset_id!r} not found: {error}") from error
    return Path(dataset.get_local_copy())


def create_draft(
    parent_id: str | None = None,
    project: str = settings.DATASET_PROJECT,
    name: str = settings.DATASET_NAME,
    description: str | None = None,
) -> Dataset:
    """A new, empty, unfinalized version (a child of `parent_id` if given); fill it with `finish`."""
    return Dataset.create(
        dataset_name=name,
        dataset_project=project,
        parent_datasets=[parent_id] if parent_id else None,
        description=description,
    )


def finish(draft: Dataset, folder: str | Path, output_uri: str | None = None) -> str:
    """Add `<folder>/<class>/<image>` to the draft, upload and finalize it; returns its id. A draft that fails is
    marked failed (`abandon`) and the error raised: a retry builds a fresh version."""
    try:
        draft.add_files(path=str(folder))
        draft.upload(show_progress=False, output_url=output_uri)
        draft.finalize()
    except Exception:
        abandon(draft)
        raise
    return draft.id


def create_version(
    folder: str | Path,
    parent_id: str | None = None,
    project: str = settings.DATASET_PROJECT,
    name: str = settings.DATASET_NAME,
) -> str:
    """Upload `<folder>/<class>/<image>` as a finalized version (a child of `parent_id` if given)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StageError(f"dataset folder {folder} does not exist")
    return finish(create_draft(parent_id, project, name), folder)


def abandon(draft: Dataset) -> None:
    """Mark a draft that failed as failed and stop the SDK's keep-alive for it (see `sdk_private`)."""
    try:
        task = sdk_private.dataset_task(draft)
        task.mark_failed(status_reason="upload failed; retried as a new version", force=True)
        task.close()
    except Exception:
        log.exception("Could not mark the failed draft %s as failed", draft.id)
    sdk_private.stop_dataset_pinger(draft)


def is_finalized(dataset_id: str) -> bool:
    try:
        return Task.get_task(task_id=dataset_id).get_status() in FINALIZED
    except ValueError:  # the draft never reached the server
        return False


def finalized_versions(project: str = settings.DATASET_PROJECT, name: str = settings.DATASET_NAME) -> list[dict]:
    """The SDK's entries (`id`, `version`, `created`, ...) of the finalized versions, newest first."""
    listed = Dataset.list_datasets(dataset_project=project, partial_name=name, only_completed=True)
    # partial_name is a regex search: keep the exact name only.
    exact = [entry for entry in listed if entry["name"] == name]
    return sorted(exact, key=lambda entry: str(entry.get("created")), reverse=True)


def lineage(dataset_id: str) -> tuple[list[str], int]:
    """(parent version ids, number of files this version added)."""
    dataset = Dataset.get(dataset_id=dataset_id)
    return list(dataset.get_dependency_graph().get(dataset_id, [])), len(dataset.list_added_files())
