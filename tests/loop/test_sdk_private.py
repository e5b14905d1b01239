"""What `loop/sdk_private.py` relies on in the clearml SDK, run for real against the session's server: an SDK
upgrade that renames or changes any of it fails here."""

from __future__ import annotations

import uuid

import clearml
import pytest
from clearml import Dataset, Task
from clearml.automation import TriggerScheduler

from loop import datasets, sdk_private


def test_the_sdk_is_the_pinned_version():
    assert clearml.__version__ == sdk_private.PINNED_SDK_VERSION


@pytest.mark.slow
def test_waiting_for_repository_detection_returns_once_it_is_done(clearml_server):
    task = Task.init(project_name=f"sdk-private-{uuid.uuid4().hex[:8]}", task_name="repo detection")
    try:
        sdk_private.wait_for_repo_detection(task, timeout=60)
        task.set_script(diff="print('kept')\n", entry_point="kept.py", repository="", branch="", commit="")
        sdk_private.wait_for_repo_detection(task, timeout=60)  # a second wait returns at once
        task.reload()
        assert task.data.script.diff == "print('kept')\n"
    finally:
        task.close()


def test_an_abandoned_draft_is_failed_and_its_pinger_stopped(clearml_server):
    project = f"sdk-private-{uuid.uuid4().hex[:8]}"
    draft = datasets.create_draft(project=project, name="draft")
    assert sdk_private.dataset_task(draft).id == draft.id
    assert draft._task_pinger is not None, "the SDK pings an unfinalized draft (what stop_dataset_pinger stops)"
    datasets.abandon(draft)
    assert draft._task_pinger is None
    assert Task.get_task(task_id=draft.id).get_status() == "failed"
    assert not datasets.is_finalized(draft.id)
    with_dataset = Dataset.list_datasets(dataset_project=project, only_completed=False)
    assert draft.id in {entry["id"] for entry in with_dataset}, "the failed draft stays listed, not finalized"


@pytest.mark.slow
def test_one_trigger_poll_reports_whether_it_launched_anything(clearml_server):
    scheduler = TriggerScheduler(pooling_frequency_minutes=1.0, sync_frequency_minutes=60)
    assert sdk_private.poll_triggers_once(scheduler) is False
