import io
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from app.feedback_store import FeedbackStore
from app.labels import InvalidLabel
from classifier.images import sha256_bytes
from classifier.synthetic import make_image


def png_bytes(class_name: str, index: int) -> bytes:
    buffer = io.BytesIO()
    make_image(class_name, index, size=48).save(buffer, format="PNG")
    return buffer.getvalue()


def add(store: FeedbackStore, data: bytes, label: str = "cat"):
    return store.add(
        data,
        label=label,
        ext="png",
        prediction="dog",
        probabilities={"cat": 0.25, "dog": 0.75},
        model_id="model-1",
        original_name="upload.png",
    )


def test_item_keeps_original_bytes_and_metadata_across_reopen(tmp_path):
    data = png_bytes("cat", 0)
    result = add(FeedbackStore(tmp_path), data, label=" Rabbit ")
    assert result.created

    reopened = FeedbackStore(tmp_path)
    (item,) = reopened.items()
    assert item.sha256 == sha256_bytes(data)
    assert reopened.image_path(item).read_bytes() == data
    assert (item.label, item.prediction, item.model_id) == ("rabbit", "dog", "model-1")
    assert item.probabilities == {"cat": 0.25, "dog": 0.75}
    assert item.original_name == "upload.png" and item.size == len(data) and item.created_at
    assert [count.label for count in reopened.label_counts()] == ["rabbit"]


def test_same_content_is_stored_once(tmp_path):
    store = FeedbackStore(tmp_path)
    first = add(store, png_bytes("cat", 1), label="cat")
    again = add(store, png_bytes("cat", 1), label="dog")
    assert first.created and not again.created
    assert again.item == first.item
    assert len(FeedbackStore(tmp_path).items()) == 1


def test_invalid_label_stores_nothing(tmp_path):
    store = FeedbackStore(tmp_path)
    with pytest.raises(InvalidLabel):
        add(store, png_bytes("cat", 2), label="not a label!")
    assert store.items() == [] and FeedbackStore(tmp_path).items() == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_interrupted_write_leaves_no_trace(tmp_path):
    store = FeedbackStore(tmp_path)
    add(store, png_bytes("cat", 3))
    half_written = tmp_path / "tmp" / "deadbeef"
    half_written.mkdir()
    (half_written / "image.png").write_bytes(b"\x89PNG partial")
    reopened = FeedbackStore(tmp_path)
    assert len(reopened.items()) == 1
    assert not half_written.exists()


def test_concurrent_writers_lose_nothing_and_dedupe(tmp_path):
    store = FeedbackStore(tmp_path)
    payloads = [png_bytes("dog", i) for i in range(24)]
    results, errors = [], []

    def submit(worker: int):
        try:
            for data in payloads[worker::4] + payloads[:3]:  # every worker also repeats the first three
                results.append(add(store, data, label="dog"))
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(result.created for result in results) == 24
    assert {item.sha256 for item in FeedbackStore(tmp_path).items()} == {sha256_bytes(d) for d in payloads}


def test_batches_take_each_item_once_and_survive_reopen(tmp_path):
    store = FeedbackStore(tmp_path)
    for i in range(3):
        add(store, png_bytes("cat", 10 + i))
    batch = store.claim_batch()
    assert len(batch.items) == 3 and store.pending() == []
    add(store, png_bytes("cat", 20))  # arrives while the batch is being published

    # A failed or crashed attempt: the same batch, with the draft it recorded, comes back.
    store.record_draft(batch, "draft-1")
    reopened = FeedbackStore(tmp_path)
    retry = reopened.claim_batch()
    assert retry.id == batch.id and retry.items == batch.items and retry.dataset_id == "draft-1"
    assert reopened.unpublished_count() == 4

    reopened.mark_published(retry, "version-2")
    with pytest.raises(ValueError, match="already published"):
        reopened.mark_published(retry, "version-3")
    after = FeedbackStore(tmp_path)
    assert {after.published_in(sha) for sha in batch.items} == {"version-2"}
    (late,) = after.pending()
    next_batch = after.claim_batch()
    assert next_batch.items == (late.sha256,)
    assert [(c.label, c.pending, c.published) for c in after.label_counts()] == [("cat", 1, 3)]


def test_no_batch_without_pending_items(tmp_path):
    assert FeedbackStore(tmp_path).claim_batch() is None


WRITER = """
import io, sys
from classifier.synthetic import make_image
from app.feedback_store import FeedbackStore
store = FeedbackStore(sys.argv[1])
for index in range(10_000):
    buffer = io.BytesIO()
    make_image("cat", index, size=40).save(buffer, format="PNG")
    item = store.add(buffer.getvalue(), label="cat", ext="png").item
    print(item.sha256, flush=True)
"""


def test_every_acknowledged_item_survives_a_kill(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    acknowledged = [writer.stdout.readline().strip() for _ in range(40)]
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    writer.stdout.close()

    store = FeedbackStore(tmp_path)
    stored = {item.sha256: item for item in store.items()}
    assert set(acknowledged) <= set(stored)
    for item in stored.values():  # complete or absent, never half-written
        assert sha256_bytes(store.image_path(item).read_bytes()) == item.sha256
        assert json.loads((store.image_path(item).parent / "meta.json").read_text())["label"] == "cat"
