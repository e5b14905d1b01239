"""The ImageNet prior: which classes a label names, the map as text, and what it does to real photos."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from classifier import synthetic
from classifier.checkpoint import Checkpoint
from classifier.data import prepare_split, scan_folder
from classifier.evaluate import evaluate_checkpoint
from classifier.imagenet import (
    category_names,
    classes_for_label,
    format_class_map,
    parse_class_map,
    resolve_class_map,
)
from classifier.model import build_model
from classifier.samples import build_sample_dataset, real_photo_folder

PHOTO_MIN_SIDE = 96


def test_cat_and_dog_name_the_imagenet_groups_and_other_labels_match_by_name():
    assert classes_for_label("cat") == list(range(281, 286))
    assert classes_for_label("dog") == list(range(151, 269))
    assert classes_for_label("rabbits") == [330, 331, 332]  # plural; wood rabbit, hare, Angora
    assert [category_names()[i] for i in classes_for_label("mug")] == ["coffee mug"]
    assert classes_for_label("goldfish") == [1] and classes_for_label("hamster") == [333]
    assert classes_for_label("capybara") == [] and classes_for_label("my-label") == []


def test_the_map_text_round_trips_and_the_user_and_the_parent_come_first():
    resolved = resolve_class_map(
        ["cat", "dog", "hamster", "thing"], parse_class_map("dog: none; thing: 5, 7-9"), {"cat": [281]}
    )
    assert resolved == {"cat": [281], "dog": [], "hamster": [333], "thing": [5, 7, 8, 9]}
    text = format_class_map(resolved)
    assert text == "cat: 281; dog: none; hamster: 333; thing: 5, 7-9"
    assert parse_class_map(text) == resolved
    assert parse_class_map(format_class_map({"dog": classes_for_label("dog")})) == {"dog": list(range(151, 269))}
    assert parse_class_map("") == {} and parse_class_map(" ; ") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cat 281", "not 'label: indices'"),
        ("cat: 1000", "0-999"),
        ("cat: 290-281", "low to high"),
        ("cat: tabby", "indices and ranges"),
        ("cat: 1; cat: 2", "twice"),
        ("x: 1;" * 5000, "at most"),
    ],
)
def test_a_bad_map_is_refused_with_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_class_map(text)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = real_photo_folder(tmp_path_factory.mktemp("photos"), min_side=PHOTO_MIN_SIDE)
    labels = [f.label for f in scan_folder(folder)]
    assert labels.count("cat") >= 2 and labels.count("dog") >= 2, "scikit-image, foolbox and catsordogs ship them"
    return folder


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return build_sample_dataset(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    from classifier.train import TrainConfig

    cache = tmp_path_factory.mktemp("embeddings")
    return TrainConfig(
        mode="head", epochs=5, num_workers=0, device="cpu", progress=False, embedding_cache_dir=str(cache)
    )


@pytest.fixture(scope="module")
def trained(sample, config):
    """What `make run` trains first: head mode on the generated sample dataset, at the backbone's 224 px."""
    from classifier.train import train

    manifest, _ = prepare_split(sample)
    return train(config, sample, manifest.train, manifest.val, manifest.classes).checkpoint


def score(checkpoint: Checkpoint, folder) -> dict:
    return evaluate_checkpoint(checkpoint, folder, scan_folder(folder), device="cpu")


def test_the_backbone_alone_knows_real_cats_and_dogs(photos):
    """No training at all: the prior decides, and the head has nothing to say yet."""
    classes = ["cat", "dog"]
    class_map = resolve_class_map(classes, {})
    model = build_model("efficientnet_lite0", 2, pretrained=True, priors=[class_map[c] for c in classes])
    metrics = score(Checkpoint.from_model(model, classes, 224, class_map=class_map), photos)
    assert metrics["accuracy"] == 1.0 and metrics["median_true_class_probability"] >= 0.95


def test_a_model_trained_on_the_sample_set_is_right_and_sure_on_real_photos(trained, photos, config, sample):
    from classifier.train import train

    assert trained.class_map == {"cat": list(range(281, 286)), "dog": list(range(151, 269))}
    metrics = score(trained, photos)
    assert metrics["accuracy"] == 1.0 and metrics["median_true_class_probability"] >= 0.95
    # The same training without the prior (today's head alone) is not: the prior is what makes the difference.
    manifest, _ = prepare_split(sample)
    head_alone = train(replace(config, class_map="cat: none; dog: none"), sample, manifest.train, [], ["cat", "dog"])
    assert head_alone.checkpoint.class_map == {"cat": [], "dog": []}
    assert score(head_alone.checkpoint, photos)["median_true_class_probability"] < 0.9


@pytest.mark.parametrize("label", ["rabbit", "capybara"])  # ImageNet knows one, not the other
def test_a_new_label_from_8_photos_is_learned_and_the_old_classes_stay_right(
    label, trained, photos, sample, config, tmp_path
):
    from classifier.train import train

    grown = shutil.copytree(sample, tmp_path / "grown")
    synthetic.make_image_folder(grown, (label,), per_class=8, size=96)
    held_out = synthetic.make_image_folder(tmp_path / "held-out", (label,), per_class=20, size=96, start=8)
    manifest, _ = prepare_split(grown, val_fraction=0.0)
    result = train(config, grown, manifest.train, [], manifest.classes, parent=trained)
    checkpoint = result.checkpoint
    assert checkpoint.classes == ["cat", "dog", label]
    assert checkpoint.class_map[label] == classes_for_label(label) and bool(checkpoint.class_map[label]) == (
        label == "rabbit"
    )
    assert score(checkpoint, held_out)["per_class"][label]["recall"] >= 0.9
    old = score(checkpoint, photos)
    assert old["accuracy"] == 1.0 and old["median_true_class_probability"] >= 0.95


def test_the_class_map_round_trips_through_the_checkpoint_and_a_format_1_checkpoint_still_serves(trained, tmp_path):
    loaded = Checkpoint.load(trained.save(tmp_path / "model.pt"))
    assert loaded.class_map == trained.class_map
    assert loaded.build_model().priors() == [list(range(281, 286)), list(range(151, 269))]

    # A model saved before the prior: no ImageNet layer, no class map; it serves its head as it did.
    old_state = {k: v for k, v in trained.state_dict.items() if not k.startswith("imagenet.")}
    raw = {**trained.to_dict(), "format_version": 1, "state_dict": old_state}
    del raw["class_map"]
    torch.save(raw, tmp_path / "old.pt")
    old = Checkpoint.load(tmp_path / "old.pt")
    model = old.build_model()
    assert old.class_map == {} and model.imagenet is None
    embeddings = torch.randn(4, 1280)
    with torch.no_grad():
        assert np.allclose(model.classify(embeddings).numpy(), model.head(embeddings).numpy())
