import pytest
import torch

from classifier.growth import NEW_CLASS_MAX_PROB, grow_head, merge_classes
from classifier.model import build_model
from classifier.preprocess import ImageFileDataset, eval_transform
from classifier.train import train


def _val_batch(checkpoint, root, files):
    dataset = ImageFileDataset(
        root, files, checkpoint.classes, eval_transform(checkpoint.input_size, checkpoint.mean, checkpoint.std)
    )
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def test_growth_keeps_old_predictions_on_real_images(full_result, cat_dog):
    root, manifest = cat_dog
    checkpoint = full_result.checkpoint
    images = _val_batch(checkpoint, root, manifest.val)
    model = checkpoint.build_model()
    with torch.no_grad():
        before = torch.softmax(model(images), dim=1)
        old_head = model.head.weight.clone(), model.head.bias.clone()
        grow_head(model, ["cat", "dog"], ["cat", "dog", "horse", "rabbit"])
        after = torch.softmax(model(images), dim=1)

    assert after.shape == (len(manifest.val), 4)
    assert torch.equal(after.argmax(1), before.argmax(1))
    assert (after[:, 2:] <= NEW_CLASS_MAX_PROB).all()
    assert torch.allclose(after[:, :2], before, atol=2 * NEW_CLASS_MAX_PROB, rtol=0)
    # Relative to each other the old classes are exactly as before.
    renormalised = after[:, :2] / after[:, :2].sum(1, keepdim=True)
    assert torch.allclose(renormalised, before, atol=1e-6)
    assert torch.equal(model.head.weight[:2], old_head[0]) and torch.equal(model.head.bias[:2], old_head[1])


def test_growth_keeps_argmax_for_any_input_and_head():
    torch.manual_seed(0)
    model = build_model("resnet18", 3, pretrained=False)
    with torch.no_grad():
        model.head.weight.normal_(0, 5)
        model.head.bias.normal_(0, 5)
        features = torch.randn(2000, 512) * 3
        before = torch.softmax(model.head(features), 1)
        grow_head(model, ["a", "b", "c"], ["a", "b", "c", "d"])
        after = torch.softmax(model.head(features), 1)
    assert torch.equal(after.argmax(1), before.argmax(1))
    assert after[:, 3].max() <= NEW_CLASS_MAX_PROB


def test_grown_model_learns_the_new_class_and_keeps_old_indices(full_result, cat_dog_rabbit, small_config):
    root, manifest = cat_dog_rabbit
    parent = full_result.checkpoint
    # The dataset lists classes alphabetically; growth keeps the parent's order and appends the new ones.
    result = train(
        small_config(mode="head", epochs=10),
        root,
        manifest.train,
        manifest.val,
        ["rabbit", "dog", "cat"],
        parent=parent,
        parent_model_id="model-parent",
    )
    assert result.checkpoint.classes == ["cat", "dog", "rabbit"]
    assert result.checkpoint.parent_model_id == "model-parent"
    assert result.metrics["accuracy"] >= 0.9
    assert result.metrics["per_class"]["rabbit"]["recall"] >= 0.8
    # Head mode never touches the parent's backbone.
    assert torch.equal(
        result.checkpoint.state_dict["features.net._conv_stem.weight"],
        parent.state_dict["features.net._conv_stem.weight"],
    )


def test_merge_classes_order():
    assert merge_classes(["dog", "cat"], ["cat", "zebra", "dog", "rabbit"]) == ["dog", "cat", "rabbit", "zebra"]
    assert merge_classes(["cat", "dog"], ["cat"]) == ["cat", "dog"]


def test_growth_rejects_reordered_or_inconsistent_classes():
    model = build_model("resnet18", 2, pretrained=False)
    with pytest.raises(ValueError, match="same order"):
        grow_head(model, ["cat", "dog"], ["dog", "cat", "rabbit"])
    with pytest.raises(ValueError, match="outputs"):
        grow_head(model, ["cat", "dog", "rabbit"], ["cat", "dog", "rabbit", "fox"])
    with pytest.raises(ValueError, match="Duplicate"):
        grow_head(model, ["cat", "dog"], ["cat", "dog", "cat"])
    assert model.head.out_features == 2
