import dataclasses

import pytest

from classifier.data import LabeledFile
from classifier.evaluate import compare_on_shared_classes, evaluate_checkpoint
from classifier.gate import DEFAULT_LOG_LOSS_TOLERANCE, decide_promotion
from classifier.train import train


@pytest.fixture(scope="module")
def worse_checkpoint(cat_dog, session_config):
    """A real model trained on deliberately swapped labels: confidently wrong on cat/dog."""
    root, manifest = cat_dog
    swap = {"cat": "dog", "dog": "cat"}
    mislabelled = [dataclasses.replace(f, label=swap[f.label]) for f in manifest.train]
    return train(session_config(mode="head", epochs=5), root, mislabelled, [], manifest.classes).checkpoint


def test_gate_publishes_a_better_model_and_refuses_a_worse_one(head_result, worse_checkpoint, cat_dog):
    root, manifest = cat_dog
    good, bad, shared = compare_on_shared_classes(head_result.checkpoint, worse_checkpoint, root, manifest.val)
    assert shared == ["cat", "dog"]
    assert good["accuracy"] >= 0.9 and bad["accuracy"] <= 0.2

    better = decide_promotion(good, bad, tolerance=0.01)
    assert better.promote and "Promoted" in better.reason

    worse = decide_promotion(bad, good, tolerance=0.01)
    assert not worse.promote
    assert f"{bad['accuracy']:.4f}" in worse.reason and f"{good['accuracy']:.4f}" in worse.reason


def test_an_unsure_model_equal_on_accuracy_is_refused_on_log_loss(head_result, cat_dog):
    """The same head at a tenth of its logits: every argmax (so the accuracy) is the same, the confidence is not."""
    root, manifest = cat_dog
    sure = head_result.checkpoint
    state = dict(sure.state_dict, **{key: sure.state_dict[key] / 10 for key in ("head.weight", "head.bias")})
    unsure = dataclasses.replace(sure, state_dict=state)
    on_unsure, on_sure, _ = compare_on_shared_classes(unsure, sure, root, manifest.val)
    assert on_unsure["accuracy"] == on_sure["accuracy"]
    assert on_unsure["log_loss"] > on_sure["log_loss"] + DEFAULT_LOG_LOSS_TOLERANCE

    refused = decide_promotion(on_unsure, on_sure, tolerance=0.02)
    assert not refused.promote and "log loss worse by" in refused.reason
    assert f"{on_unsure['log_loss']:.4f} vs {on_sure['log_loss']:.4f}" in refused.reason
    assert decide_promotion(on_sure, on_unsure, tolerance=0.02).promote  # the calibrated one replaces it


def test_candidate_with_a_new_class_is_compared_on_the_classes_both_know(cat_dog_rabbit, head_result, session_config):
    root, manifest = cat_dog_rabbit
    candidate = train(
        session_config(mode="head", epochs=10),
        root,
        manifest.train,
        manifest.val,
        manifest.classes,
        parent=head_result.checkpoint,
    ).checkpoint
    production = head_result.checkpoint
    cand, prod, shared = compare_on_shared_classes(candidate, production, root, manifest.val)
    shared_files = [f for f in manifest.val if f.label != "rabbit"]
    assert shared == ["cat", "dog"]
    assert cand["num_samples"] == prod["num_samples"] == len(shared_files)
    assert cand["classes"] == ["cat", "dog", "rabbit"] and prod["classes"] == ["cat", "dog"]
    assert decide_promotion(cand, prod, tolerance=0.05).promote

    # The old production model is evaluated on the classes it knows; rabbit files are counted, not scored.
    old_on_all = evaluate_checkpoint(production, root, manifest.val)
    assert old_on_all["num_samples"] == len(shared_files)
    assert old_on_all["num_unknown_label"] == len(manifest.val) - len(shared_files)


def test_gate_rules_and_bad_input():
    assert decide_promotion({"accuracy": 0.7}, None, 0.0).promote
    assert decide_promotion({"accuracy": 0.90}, {"accuracy": 0.92}, 0.02).promote
    assert not decide_promotion({"accuracy": 0.89}, {"accuracy": 0.92}, 0.02).promote
    assert decide_promotion({"accuracy": 0.92}, {"accuracy": 0.92}, 0.0).promote
    with pytest.raises(ValueError, match="tolerance"):
        decide_promotion({"accuracy": 0.9}, {"accuracy": 0.9}, -0.1)
    with pytest.raises(ValueError, match="accuracy"):
        decide_promotion({"macro_f1": 0.9}, {"accuracy": 0.9}, 0.0)


def test_log_loss_rule_and_its_tolerance():
    production = {"accuracy": 1.0, "log_loss": 0.10}
    assert decide_promotion({"accuracy": 1.0, "log_loss": 0.14}, production, 0.0).promote  # within 0.05 nats
    worse = decide_promotion({"accuracy": 1.0, "log_loss": 0.16}, production, 0.0)
    assert not worse.promote and "log loss worse by 0.0600" in worse.reason
    assert decide_promotion({"accuracy": 1.0, "log_loss": 0.16}, production, 0.0, log_loss_tolerance=0.1).promote
    assert not decide_promotion({"accuracy": 0.9, "log_loss": 0.01}, production, 0.05).promote  # accuracy first
    older = decide_promotion({"accuracy": 1.0, "log_loss": 9.0}, {"accuracy": 1.0}, 0.0)
    assert older.promote and "no log loss to compare" in older.reason
    for bad in (-0.1, float("nan"), "0.05", True):
        with pytest.raises(ValueError, match="log_loss_tolerance"):
            decide_promotion({"accuracy": 1.0}, production, 0.0, log_loss_tolerance=bad)
    with pytest.raises(ValueError, match="log_loss"):
        decide_promotion({"accuracy": 1.0, "log_loss": float("inf")}, production, 0.0)


def test_compare_refuses_models_without_shared_classes(head_result, cat_dog):
    root, manifest = cat_dog
    other = dataclasses.replace(head_result.checkpoint, classes=["fox", "owl"])
    with pytest.raises(ValueError, match="no class in common"):
        compare_on_shared_classes(head_result.checkpoint, other, root, manifest.val)
    with pytest.raises(ValueError, match="knows"):
        evaluate_checkpoint(other, root, [LabeledFile("cat/x.jpg", "cat", "0" * 64)])
