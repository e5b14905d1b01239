import dataclasses

import pytest
import torch

from classifier.backbones import build_backbone
from classifier.data import LabeledFile
from classifier.train import TrainConfig, train


def test_full_mode_learns_the_classes(full_result, cat_dog):
    _, manifest = cat_dog
    assert full_result.metrics["accuracy"] >= 0.9
    assert full_result.checkpoint.classes == ["cat", "dog"]
    assert [row["epoch"] for row in full_result.history] == [1, 2, 3]
    assert all("val_accuracy" in row and "train_loss" in row for row in full_result.history)
    assert full_result.metrics["num_val"] == len(manifest.val) > 0
    assert full_result.checkpoint.dataset_id == "ds-catdog"
    assert full_result.checkpoint.input_size == 64
    assert full_result.checkpoint.train_config["mode"] == "full"


def test_head_mode_learns_the_classes_and_reuses_cached_embeddings(head_result, cat_dog, session_config):
    root, manifest = cat_dog
    assert head_result.metrics["accuracy"] >= 0.9
    # The head_result fixture may or may not have been the first to embed these files; a rerun never embeds.
    rerun = train(session_config(mode="head", epochs=10), root, manifest.train, manifest.val, manifest.classes)
    assert rerun.metrics["embeddings_computed"] == 0
    assert rerun.metrics["embeddings_cached"] == len(manifest.train) + len(manifest.val)
    for key, tensor in head_result.checkpoint.state_dict.items():
        assert torch.equal(tensor, rerun.checkpoint.state_dict[key]), key


def test_head_mode_keeps_the_backbone_frozen(head_result):
    backbone, _, _ = build_backbone("efficientnet_lite0", pretrained=True)
    trained = head_result.checkpoint.state_dict
    for key, tensor in backbone.state_dict().items():
        assert torch.equal(trained[f"features.{key}"], tensor), key


@pytest.mark.slow
def test_full_training_is_reproducible_for_a_seed(cat_dog, small_config):
    root, manifest = cat_dog
    config = small_config(mode="full", epochs=1)
    runs = [train(config, root, manifest.train[:20], manifest.val[:4], manifest.classes) for _ in range(2)]
    other = train(dataclasses.replace(config, seed=1), root, manifest.train[:20], manifest.val[:4], manifest.classes)
    first, second = (run.checkpoint.state_dict for run in runs)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["head.weight"], other.checkpoint.state_dict["head.weight"])


@pytest.mark.slow
def test_augmentation_in_loader_workers_is_reproducible(cat_dog, small_config):
    root, manifest = cat_dog
    config = small_config(mode="full", epochs=1, num_workers=2)
    first, second = (
        train(config, root, manifest.train[:24], [], manifest.classes).checkpoint.state_dict for _ in range(2)
    )
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_on_epoch_receives_every_epoch(cat_dog, small_config):
    root, manifest = cat_dog
    seen = []
    train(
        small_config(mode="head", epochs=4),
        root,
        manifest.train,
        manifest.val,
        manifest.classes,
        on_epoch=lambda epoch, row: seen.append((epoch, row["lr"], row["val_accuracy"])),
    )
    assert [epoch for epoch, _, _ in seen] == [1, 2, 3, 4]


def test_step_lr_halves_the_learning_rate_every_step_size_epochs(cat_dog, small_config):
    root, manifest = cat_dog
    result = train(
        small_config(mode="head", epochs=5, step_size=2, lr=0.01), root, manifest.train, manifest.val, manifest.classes
    )
    assert [row["lr"] for row in result.history] == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])


def test_training_rejects_files_of_unknown_classes(cat_dog, small_config):
    root, manifest = cat_dog
    stray = LabeledFile(manifest.train[0].relpath, "horse", manifest.train[0].sha256)
    with pytest.raises(ValueError, match="horse"):
        train(small_config(mode="head"), root, manifest.train + [stray], manifest.val, manifest.classes)
    with pytest.raises(ValueError, match="no training files"):
        train(small_config(), root, [], manifest.val, manifest.classes)


def test_config_from_ui_strings_and_bad_values():
    config = TrainConfig.from_dict({"epochs": "3", "lr": "0.0005", "pretrained": "false", "mode": "head"})
    assert (config.epochs, config.lr, config.pretrained, config.mode) == (3, 0.0005, False, "head")
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
    with pytest.raises(ValueError, match="Unknown training parameters"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(mode="partial")
    with pytest.raises(ValueError, match="backbone"):
        TrainConfig(backbone="vgg16")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig.from_dict({"epochs": "ten"})


def test_the_head_optimizer_computes_what_torch_adam_computes():
    """Head mode trains with classifier.train.HeadAdam to spare the process torch.optim's import of torch._dynamo;
    it must stay torch's Adam, step for step."""
    from torch import nn

    from classifier.train import HeadAdam

    torch.manual_seed(0)
    ours, theirs = nn.Linear(16, 3), nn.Linear(16, 3)
    theirs.load_state_dict(ours.state_dict())
    mine, reference = (
        HeadAdam(list(ours.parameters()), lr=1e-2),
        torch.optim.Adam(theirs.parameters(), lr=1e-2, foreach=False),
    )
    for step in range(60):
        features, targets = torch.randn(8, 16), torch.randint(0, 3, (8,))
        if step == 30:
            mine.lr *= 0.5
            for group in reference.param_groups:
                group["lr"] *= 0.5
        for model, optimizer in ((ours, mine), (theirs, reference)):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(features), targets).backward()
            optimizer.step()
    for mine_tensor, reference_tensor in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(mine_tensor, reference_tensor)
