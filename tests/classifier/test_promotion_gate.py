import dataclasses

import pytest

from classifier.data import LabeledFile
from classifier.evaluate import compare_on_shared_classes, evaluate_checkpoint
from classifier.gate import decide_promotion
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


def test_compare_refuses_models_without_shared_classes(head_result, cat_dog):
    root, manifest = cat_dog
    other = dataclasses.replace(head_result.checkpoint, classes=["fox", "owl"])
    with pytest.raises(ValueError, match="no class in common"):
        compare_on_shared_classes(head_result.checkpoint, other, root, manifest.val)
    with pytest.raises(ValueError, match="knows"):
        evaluate_checkpoint(other, root, [LabeledFile("cat/x.jpg", "cat", "0" * 64)])
