"""Publishing feedback into ClearML dataset versions, against the embedded server with the real SDK."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from app_testing import app_config, image_bytes
from clearml import Dataset, Task

from app.application import create_app
from app.feedback_store import FeedbackStore
from app.publisher import AutoPublisher, Publisher
from common.waiting import wait_until


def unique_project() -> str:
    return f"app-test-{uuid.uuid4().hex[:8]}"


def add_items(store: FeedbackStore, label: str, indices) -> list[str]:
    return [store.add(image_bytes(label, i), label=label, ext="png").item.sha256 for i in indices]


def dataset_path(store: FeedbackStore, sha: str) -> str:
    item = store.get(sha)
    return f"{item.label}/{item.sha256}.png"


def added_files(dataset_id: str) -> set[str]:
    return set(Dataset.get(dataset_id=dataset_id).list_added_files())


@pytest.fixture
def store(tmp_path) -> FeedbackStore:
    return FeedbackStore(tmp_path / "feedback")


@pytest.mark.slow
def test_each_publication_is_a_child_version_with_only_the_new_items(clearml_server, store):
    project = unique_project()
    publisher = Publisher(store, project, "pets")
    first = add_items(store, "cat", [1, 2]) + add_items(store, "rabbit", [3])
    (v1,) = publisher.publish_pending()
    second = add_items(store, "dog", [4])
    (v2,) = publisher.publish_pending()
    assert publisher.publish_pending() == []

    versions = publisher.versions()
    assert [(v.id, v.parents, v.files_added) for v in versions] == [(v2, [v1], 1), (v1, [], 3)]
    assert added_files(v1) == {dataset_path(store, sha) for sha in first}
    assert added_files(v2) == {dataset_path(store, sha) for sha in second}
    merged = Path(Dataset.get(dataset_id=v2).get_local_copy())
    for sha in first + second:
        assert (merged / dataset_path(store, sha)).read_bytes() == store.image_path(store.get(sha)).read_bytes()
    assert {store.published_in(sha) for sha in first} == {v1}
    assert store.published_in(second[0]) == v2
    assert publisher.current_version_id() == v2


@pytest.mark.slow
def test_failed_upload_loses_nothing_and_the_retry_publishes_each_item_once(clearml_server, store, tmp_path):
    project = unique_project()
    add_items(store, "cat", [10])
    (v1,) = Publisher(store, project, "pets").publish_pending()
    waiting = add_items(store, "dog", [11, 12])

    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("uploads under this path fail")
    broken = Publisher(store, project, "pets", output_uri=f"file://{not_a_folder}/datasets")
    with pytest.raises(Exception):  # noqa: B017 - whatever the SDK raises, nothing may be lost
        broken.publish_pending()
    draft = store.open_batch().dataset_id
    assert draft is not None and store.unpublished_count() == 2
    assert Task.get_task(task_id=draft).get_status() == "failed"

    restarted = FeedbackStore(store.root)  # the retry also survives an app restart
    (v2,) = Publisher(restarted, project, "pets").publish_pending()
    assert v2 != draft
    assert added_files(v2) == {dataset_path(restarted, sha) for sha in waiting}
    assert [(v.id, v.parents) for v in Publisher(restarted, project, "pets").versions()] == [(v2, [v1]), (v1, [])]
    assert restarted.unpublished_count() == 0 and restarted.open_batch() is None


def test_version_finalized_just_before_a_crash_is_recorded_not_published_again(clearml_server, store, tmp_path):
    project = unique_project()
    shas = add_items(store, "cat", [20, 21])
    # A publisher that finalized the version and died before marking the batch published:
    batch = store.claim_batch()
    dataset = Dataset.create(dataset_name="pets", dataset_project=project)
    store.record_draft(batch, dataset.id)
    folder = tmp_path / "staging"
    for sha in shas:
        target = folder / dataset_path(store, sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.image_path(store.get(sha)).read_bytes())
    dataset.add_files(path=str(folder))
    dataset.upload(show_progress=False)
    dataset.finalize()

    restarted = FeedbackStore(store.root)
    publisher = Publisher(restarted, project, "pets")
    assert publisher.publish_pending() == [dataset.id]
    assert [v.id for v in publisher.versions()] == [dataset.id]
    assert {restarted.published_in(sha) for sha in shas} == {dataset.id}


def test_automatic_publishing_after_n_items(clearml_server, store):
    publisher = Publisher(store, unique_project(), "pets")
    auto = AutoPublisher(publisher, every_n=3, every_minutes=0, check_interval_s=0.1)
    add_items(store, "cat", [30, 31])
    assert not auto.due()
    add_items(store, "cat", [32])
    assert auto.due()
    auto.start()
    try:
        wait_until(lambda: store.unpublished_count() == 0, 60, "every item published", interval=0.1)
    finally:
        auto.stop()
    (version,) = publisher.versions()
    assert version.files_added == 3


@pytest.mark.slow
def test_automatic_publishing_after_t_minutes(clearml_server, store):
    publisher = Publisher(store, unique_project(), "pets")
    auto = AutoPublisher(publisher, every_n=0, every_minutes=1.5 / 60, check_interval_s=0.1)
    add_items(store, "dog", [40])
    assert not auto.due()
    started = time.monotonic()
    auto.start()
    try:
        wait_until(lambda: store.unpublished_count() == 0, 60, "every item published", interval=0.1)
    finally:
        auto.stop()
    assert time.monotonic() - started >= 1.0
    assert [v.files_added for v in publisher.versions()] == [1]


@pytest.mark.slow
def test_statistics_show_feedback_counts_and_versions_with_parents(clearml_server, tmp_path):
    project = unique_project()
    config = app_config(tmp_path / "app", "--project", project, "--dataset-project", project)
    with create_app(config, None) as app:
        ui = app.ui
        add_items(app.service.store, "cat", [50])
        first = ui.publish()
        add_items(app.service.store, "rabbit", [51, 52])
        second = ui.publish()
        add_items(app.service.store, "dog", [53])
        assert ui.publish().startswith("Published") and ui.publish() == "Nothing to publish."

        frame, summary = ui.feedback_stats()
        assert "0 pending, 4 published" in summary
        assert sorted(map(tuple, frame.values.tolist())) == [
            ("cat", "published", 1),
            ("dog", "published", 1),
            ("rabbit", "published", 2),
        ]
        versions, models = ui.registry_stats()
        rows = versions[["dataset version", "parents", "files added"]].values.tolist()
        v3, v2, v1 = (row[0] for row in rows)
        assert rows == [[v3, v2, 1], [v2, v1, 2], [v1, "—", 1]]
        assert v1 in first and v2 in second
        assert models.empty
