import pickle

import numpy as np
import pytest
import torch

from classifier.checkpoint import Checkpoint
from classifier.predict import Predictor
from classifier.synthetic import make_image


def test_checkpoint_round_trip_with_weights_only(full_result, tmp_path):
    original = full_result.checkpoint
    path = original.save(tmp_path / "model.pt")

    raw = torch.load(path, weights_only=True)  # no pickled code needed to read it
    assert raw["classes"] == ["cat", "dog"]

    loaded = Checkpoint.load(path)
    assert loaded.classes == original.classes
    assert (loaded.backbone, loaded.input_size) == ("efficientnet_lite0", 64)
    assert loaded.mean == original.mean and loaded.std == original.std
    assert loaded.dataset_id == "ds-catdog" and loaded.parent_model_id is None
    assert loaded.metrics["accuracy"] == original.metrics["accuracy"]
    assert loaded.metrics["confusion_matrix"] == original.metrics["confusion_matrix"]
    assert loaded.train_config["mode"] == "full"
    assert loaded.state_dict.keys() == original.state_dict.keys()
    assert all(torch.equal(loaded.state_dict[k], original.state_dict[k]) for k in original.state_dict)

    image = make_image("dog", 999, size=80)
    assert Predictor(original).predict(image) == Predictor.from_file(path).predict(image)


def test_numpy_metrics_are_stored_as_plain_types(full_result, tmp_path):
    checkpoint = Checkpoint(
        **{**full_result.checkpoint.__dict__, "metrics": {"accuracy": np.float64(0.5), "counts": np.array([1, 2])}}
    )
    with pytest.raises(TypeError, match="ndarray"):
        checkpoint.save(tmp_path / "bad.pt")
    checkpoint.metrics = {"accuracy": np.float64(0.5), "support": np.int64(3)}
    loaded = Checkpoint.load(checkpoint.save(tmp_path / "ok.pt"))
    assert loaded.metrics == {"accuracy": 0.5, "support": 3}
    assert not (tmp_path / "bad.pt").exists()


class _Payload:
    def __reduce__(self):
        return (print, ("executed",))


def test_load_refuses_files_that_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="not a classifier checkpoint"):
        Checkpoint.load(text)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="format version"):
        Checkpoint.load(plain)
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps(_Payload(), protocol=2))
    with pytest.raises(ValueError, match="not a classifier checkpoint"):
        Checkpoint.load(pickled)
