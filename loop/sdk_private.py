"""Every use of the clearml SDK's private API, in one place (pinned for clearml 2.1.12).

Each function says why the public API does not do it. `tests/loop/test_sdk_private.py` runs each of them against
a real server, so an SDK upgrade that changes what they rely on fails there and not in a pipeline run.
"""

from __future__ import annotations

from clearml import Dataset, Task
from clearml.automation import TriggerScheduler

PINNED_SDK_VERSION = "2.1.12"


def wait_for_repo_detection(task: Task, timeout: float = 300.0) -> None:
    """Let `Task.init`'s background repository detection finish, so it cannot overwrite a script set afterwards
    (there is no public way to wait for it)."""
    task._wait_for_repo_detection(timeout=timeout)


def dataset_task(dataset: Dataset) -> Task:
    """The task behind a dataset version (the public `Dataset` API offers no way to mark a draft failed)."""
    return dataset._task


def stop_dataset_pinger(dataset: Dataset) -> None:
    """Stop the keep-alive thread of an unfinalized dataset: the SDK pings its task until finalize(), retrying
    forever once the server is gone, and offers no public way to stop it."""
    if dataset._task_pinger is not None:
        dataset._task_pinger.unregister()
        dataset._task_pinger = None


def poll_triggers_once(scheduler: TriggerScheduler) -> bool:
    """One poll of every trigger of `scheduler` (what `start()` repeats forever); True when a task was launched.
    Used by tests to drive the scheduler deterministically."""
    return scheduler._step()
