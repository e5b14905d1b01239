import math

import numpy as np
import pytest

from classifier.metrics import classification_metrics, expected_calibration_error


def test_metrics_on_a_hand_checked_example():
    # true: cat cat cat dog dog rabbit; predicted: cat cat dog dog cat rabbit
    probs = np.array(
        [[0.9, 0.1, 0.0], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]]
    )
    m = classification_metrics([0, 0, 0, 1, 1, 2], probs, ["cat", "dog", "rabbit"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert m["per_class"]["cat"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert m["per_class"]["dog"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    expected_loss = -np.mean(np.log([0.9, 0.6, 0.2, 0.8, 0.4, 0.8]))
    assert m["log_loss"] == pytest.approx(expected_loss)
    assert m["classes"] == ["cat", "dog", "rabbit"] and m["num_samples"] == 6


def test_log_loss_stays_finite_and_absent_classes_do_not_count():
    m = classification_metrics([0, 0], np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), ["a", "b", "c"])
    assert math.isfinite(m["log_loss"])
    # "c" is neither true nor predicted: macro F1 over a (F1 2/3) and b (0).
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)


def test_metrics_reject_inconsistent_input():
    with pytest.raises(ValueError, match="at least one"):
        classification_metrics([], np.zeros((0, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        classification_metrics([0], np.zeros((1, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([2], np.zeros((1, 2)), ["a", "b"])


def test_expected_calibration_error_is_the_gap_between_confidence_and_accuracy():
    # Two bins: 0.9 confident and right in 2 of 4 (gap 0.4), 0.6 confident and right in 2 of 2 (gap 0.4).
    probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    assert expected_calibration_error([0, 0, 1, 1, 0, 0], probs) == pytest.approx(0.4)
    assert expected_calibration_error([0, 0], np.array([[1.0, 0.0], [0.75, 0.25]])) == pytest.approx(0.125)
    calibrated = np.array([[0.5, 0.5]] * 4)
    assert expected_calibration_error([0, 1, 1, 0], calibrated) == pytest.approx(0.0)
    assert classification_metrics([0, 0, 1, 1, 0, 0], probs, ["a", "b"])["expected_calibration_error"] == pytest.approx(
        0.4
    )
