"""The review queue: the least sure uploads first, kept only with consent, bounded by count and age."""

from __future__ import annotations

import pytest
from app_testing import app_config, image_bytes, served

from app.application import create_app
from app.review import ReviewQueue

DAY = 86400.0


def offer(queue: ReviewQueue, name: str, probabilities: dict[str, float], now: float = 1000.0) -> bool:
    data = name.encode() * 10
    return queue.offer(
        data,
        sha256=name,
        probabilities=probabilities,
        model_id="m",
        prediction_id=None,
        image_format="PNG",
        extension="png",
        now=now,
    )


@pytest.mark.parametrize(
    ("by", "expected"),
    [("confidence", ["flat3", "close", "sure"]), ("margin", ["close", "flat3", "sure"])],
)
def test_least_sure_first_by_confidence_or_margin(tmp_path, by, expected):
    queue = ReviewQueue(tmp_path, capacity=10, by=by)
    offer(queue, "sure", {"cat": 0.9, "dog": 0.05, "rabbit": 0.05})
    offer(queue, "close", {"cat": 0.5, "dog": 0.48, "rabbit": 0.02})  # margin 0.02
    offer(queue, "flat3", {"cat": 0.4, "dog": 0.3, "rabbit": 0.3})  # lowest confidence, margin 0.1
    assert [item.sha256 for item in queue.items(now=1000.0)] == expected


def test_pruned_by_count_keeping_the_least_sure_and_by_age(tmp_path):
    queue = ReviewQueue(tmp_path, capacity=2, max_age_s=DAY, by="confidence")
    assert offer(queue, "c60", {"cat": 0.6, "dog": 0.4}, now=0.0)
    assert offer(queue, "c70", {"cat": 0.7, "dog": 0.3}, now=0.0)
    assert not offer(queue, "c90", {"cat": 0.9, "dog": 0.1}, now=0.0)  # surer than all kept: not stored
    assert offer(queue, "c55", {"cat": 0.55, "dog": 0.45}, now=0.5 * DAY)  # pushes out the surest
    assert [item.sha256 for item in queue.items(now=0.5 * DAY)] == ["c55", "c60"]
    assert sorted(path.name for path in queue.images.iterdir()) == ["c55.png", "c60.png"]
    assert [item.sha256 for item in queue.items(now=1.2 * DAY)] == ["c55"]  # c60 is older than a day
    assert [path.name for path in queue.images.iterdir()] == ["c55.png"]
    assert [item.sha256 for item in ReviewQueue(tmp_path, 2, DAY).items(now=1.2 * DAY)] == ["c55"]  # durable


def test_uploads_are_kept_only_with_consent(tmp_path, checkpoints):
    model = served(checkpoints["two"], "model-two")
    without = create_app(app_config(tmp_path / "off"), None, model=model)
    with_consent = create_app(app_config(tmp_path / "on", "--review-keep"), None, model=model)
    with without, with_consent:
        for app in (without, with_consent):
            app.service.predict(image_bytes("cat", 400))
        assert without.service.review is None
        assert not (tmp_path / "off" / "review").exists()
        (item,) = with_consent.service.review.items()
        assert with_consent.service.review.image_path(item).read_bytes() == image_bytes("cat", 400)


def test_an_answer_is_ordinary_feedback_on_the_kept_prediction(tmp_path, checkpoints):
    config = app_config(tmp_path / "app", "--review-keep")
    with create_app(config, None, model=served(checkpoints["two"], "model-two")) as app:
        service = app.service
        prediction = service.predict(image_bytes("dog", 410))
        (item,) = service.review.items()
        assert item.prediction_id == prediction.id
        service.answer_review(item, "rabbit", client="user:ann")
        (stored,) = service.store.items()
        assert (stored.label, stored.prediction, stored.client) == ("rabbit", prediction.top, "user:ann")
        assert service.review.items() == []
        assert service.log.count() == 1 and service.log.quality("model-two").agreement.feedback == 1
