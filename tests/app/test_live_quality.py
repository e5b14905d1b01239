"""Live quality: predictions logged, feedback closing the loop, figures per model version, and the serving task."""

from __future__ import annotations

import uuid

from app_testing import app_config, image_bytes, register_model, served
from clearml import Task

from app.application import create_app
from app.quality import Agreement, PredictionLog, QualityThreshold
from app.serving_report import ServingReporter
from loop.serving import DROP_TAG, SERVING_TAG

HOUR = 3600.0


def probabilities(top: str, confidence: float, classes=("cat", "dog")) -> dict[str, float]:
    rest = (1.0 - confidence) / (len(classes) - 1)
    return {name: confidence if name == top else rest for name in classes}


def constructed_log(path, a: str = "A", b: str = "B") -> PredictionLog:
    """Model A serves 6 predictions (hour 0-1), then B (knows rabbit) serves 4 (hour 2); 8 get feedback."""
    log = PredictionLog(path)
    sequence = [
        # (model, top, confidence, hour, feedback label or None)
        ("A", "cat", 0.95, 0.1, "cat"),
        ("A", "cat", 0.55, 0.2, "dog"),
        ("A", "dog", 0.85, 0.3, "dog"),
        ("A", "dog", 0.65, 1.1, "rabbit"),  # a class A does not know
        ("A", "cat", 0.75, 1.2, None),
        ("A", "dog", 0.99, 1.3, "cat"),
        ("B", "rabbit", 0.90, 2.1, "rabbit"),
        ("B", "cat", 0.45, 2.2, "cat"),
        ("B", "dog", 0.35, 2.3, None),
        ("B", "dog", 0.80, 2.4, "cat"),
    ]
    for index, (model, top, confidence, hour, label) in enumerate(sequence):
        classes = ("cat", "dog") if model == "A" else ("cat", "dog", "rabbit")
        prediction_id = log.record_prediction(
            {"A": a, "B": b}[model], probabilities(top, confidence, classes), f"sha{index}", "address:x", at=hour * HOUR
        )
        if label is not None:
            log.record_feedback(prediction_id, label, known=label in classes, at=hour * HOUR + 60)
    return log


def test_agreement_figures_are_exact_and_split_by_model_version(tmp_path):
    log = constructed_log(tmp_path / "quality.sqlite3")
    assert log.models() == ["B", "A"]
    a, b = log.quality("A", bucket_s=HOUR, window=3), log.quality("B", bucket_s=HOUR, window=3)
    assert (a.predictions, a.agreement) == (6, Agreement(feedback=5, agreed=2))
    assert a.per_class == {"cat": Agreement(2, 1), "dog": Agreement(2, 1), "rabbit": Agreement(1, 0)}
    assert a.over_time == {0.0: Agreement(3, 2), HOUR: Agreement(2, 0)}
    assert a.unknown_labels == 1
    assert a.recent == Agreement(3, 1)  # the last three feedback items on A: dog/cat, dog/rabbit, dog/dog
    assert a.confidence_histogram == [0, 0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert (b.predictions, b.agreement, b.unknown_labels) == (4, Agreement(3, 2), 0)
    assert b.per_class == {"rabbit": Agreement(1, 1), "cat": Agreement(2, 1)}
    assert b.over_time == {2 * HOUR: Agreement(3, 2)}
    assert b.confidence_histogram == [0, 0, 0, 1, 1, 0, 0, 0, 1, 1]
    assert Agreement(3, 2).rate == 2 / 3 and Agreement(0, 0).rate is None

    threshold = QualityThreshold(rate=0.5, window=3, min_feedback=3)
    assert threshold.alert(a).model_id == "A" and "dropped to 33%" in threshold.alert(a).message()
    assert threshold.alert(b) is None
    assert QualityThreshold(rate=0.5, window=3, min_feedback=4).alert(a) is None  # too little feedback yet


def test_log_is_bounded_and_durable(tmp_path):
    log = PredictionLog(tmp_path / "quality.sqlite3", max_rows=5)
    ids = [log.record_prediction("A", probabilities("cat", 0.9), f"sha{i}") for i in range(12)]
    assert log.count() == 5
    assert not log.record_feedback(ids[0], "cat", known=True)  # pruned
    assert log.record_feedback(ids[-1], "dog", known=True)
    log.close()
    reopened = PredictionLog(tmp_path / "quality.sqlite3", max_rows=5)
    assert reopened.count() == 5 and reopened.quality("A").agreement == Agreement(1, 0)


def test_feedback_through_the_app_closes_the_loop_across_a_model_swap(tmp_path, checkpoints):
    with create_app(app_config(tmp_path / "app"), None, model=served(checkpoints["two"], "model-two")) as app:
        service = app.service
        first = service.predict(image_bytes("cat", 300))
        service.submit_feedback(image_bytes("cat", 300), first.top, prediction=first)
        service.submit_feedback(image_bytes("dog", 301), "rabbit")  # predicted now, then answered
        service.holder.swap(served(checkpoints["three"], "model-three"))
        service.submit_feedback(image_bytes("rabbit", 302), "rabbit")
        log = service.log
        assert log.count() == 3  # one prediction per image: the feedback reused the one the user saw
        two, three = log.quality("model-two"), log.quality("model-three")
        assert two.agreement == Agreement(2, 1) and two.unknown_labels == 1
        assert three.predictions == 1 and three.agreement.feedback == 1 and three.unknown_labels == 0
        frame, text = app.ui.quality_stats()
        assert "`model-three` (serving)" in text and "`model-two`" in text
        assert frame["predictions"].sum() == 1


def test_figures_reach_the_serving_task_and_a_drop_is_flagged(clearml_server, tmp_path, checkpoints):
    from app.model_holder import ModelHolder

    project = f"app-test-{uuid.uuid4().hex[:8]}"
    a = register_model(checkpoints["two"], tmp_path, project, "a", ["production"])
    b = register_model(checkpoints["three"], tmp_path, project, "b", ["production"])
    log = constructed_log(tmp_path / "quality.sqlite3", a, b)
    holder = ModelHolder()
    holder.swap(served(checkpoints["two"], a))
    reporter = ServingReporter(
        log, holder, project, "serving test", QualityThreshold(rate=0.5, window=3, min_feedback=3), interval_s=60
    )
    try:
        reporter.report_once()
        task = Task.get_task(task_id=reporter.id)
        assert task.get_project_name() == project and task.name == "serving test"
        assert {SERVING_TAG, f"model:{a}", DROP_TAG} <= set(task.get_tags())
        assert task.models["input"][0].id == a  # listed with the model it serves
        scalars = task.get_reported_scalars()
        assert scalars["agreement"][a]["y"] == [0.4] and scalars["agreement"][b]["y"] == [2 / 3]
        assert scalars["recent agreement"][a]["y"] == [1 / 3]
        assert scalars["unknown labels"][a]["y"] == [1] and scalars["predictions"][b]["y"] == [4]

        holder.swap(served(checkpoints["three"], b))  # b serves now, and its agreement is above the threshold
        reporter.report_once()
        task.reload()
        tags = set(task.get_tags())
        assert f"model:{b}" in tags and f"model:{a}" not in tags and DROP_TAG not in tags
        assert Task.get_task(task_id=reporter.id).get_reported_scalars()["agreement"][a]["x"] == [0, 1]
    finally:
        reporter.close()
