"""How right and how sure the first model is on real photos, with and without the ImageNet prior, and how it grows.

Trains as `make run` trains the first model (the generated sample dataset, the pipeline's head mode, 10 epochs,
EfficientNet-Lite0 at 224 px), once as today's head alone (`class_map` "cat: none; dog: none") and once with
the prior (the automatic map), then scores both on the real photos the packages ship (never trained on):
the photos at least 96 px on a side, and the 32 px CIFAR thumbnails apart. Then the two growth cases, each
from the prior model with 8 generated photos of a new label added to the sample dataset, as a feedback version
adds them: one ImageNet knows (`rabbit`), one it does not (`capybara`); recall of the new class on 40 other
generated photos of it, and the real cat and dog photos again.

No registry ships real photos of a rabbit, so both growth cases use generated photos of the new label: they
show that growth learns from 8 examples and keeps the old classes, not what ImageNet adds for a real rabbit.

    python -m benchmarks.model_quality [--epochs 10] [--image-size 224]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from classifier import synthetic
from classifier.data import prepare_split, scan_folder
from classifier.evaluate import evaluate_checkpoint
from classifier.imagenet import classes_for_label
from classifier.samples import build_sample_dataset, real_photo_folder
from classifier.train import TrainConfig, train

PHOTO_MIN_SIDE = 96
GROWTH_SHOTS = 8
GROWTH_HELD_OUT = 40
NO_PRIOR = "cat: none; dog: none"
COLUMNS = ("accuracy", "median_true_class_probability", "log_loss", "expected_calibration_error")


def score(checkpoint, folder: Path) -> dict:
    return evaluate_checkpoint(checkpoint, folder, scan_folder(folder), device="cpu")


def row(name: str, metrics: dict) -> str:
    cells = "  ".join(f"{metrics[column]:>8.3f}" for column in COLUMNS)
    return f"  {name:<34} {metrics['num_samples']:>3}  {cells}"


def header() -> str:
    return f"  {'':<34} {'n':>3}  {'accuracy':>8}  {'median p':>8}  {'log loss':>8}  {'ECE':>8}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=0, help="0: the backbone's (224)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    work = Path(tempfile.mkdtemp(prefix="model-quality-"))
    try:
        sample = build_sample_dataset(work / "sample")
        photos = real_photo_folder(work / "photos", min_side=PHOTO_MIN_SIDE)
        thumbnails = work / "thumbnails"
        for path in scan_folder(real_photo_folder(work / "all-real")):
            if not (photos / path.relpath).exists():
                (thumbnails / path.label).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(work / "all-real" / path.relpath, thumbnails / path.relpath)
        config = TrainConfig(
            mode="head",
            epochs=args.epochs,
            image_size=args.image_size,
            num_workers=0,
            device="cpu",
            progress=False,
            embedding_cache_dir=str(work / "embeddings"),
        )
        manifest, _ = prepare_split(sample)
        print(f"training set: {len(manifest.train)} generated images ({manifest.classes}), {len(manifest.val)} val")
        print(header())
        models = {}
        for name, class_map in (("head alone (today)", NO_PRIOR), ("ImageNet prior + head", "")):
            started = time.perf_counter()
            result = train(replace(config, class_map=class_map), sample, manifest.train, manifest.val, manifest.classes)
            models[name] = result.checkpoint
            print(f"  {name}: trained in {time.perf_counter() - started:.1f} s")
            print(row(f"{name}, photos >= {PHOTO_MIN_SIDE} px", score(result.checkpoint, photos)))
            if thumbnails.exists():
                print(row(f"{name}, 32 px thumbnails", score(result.checkpoint, thumbnails)))

        parent = models["ImageNet prior + head"]
        for label in ("rabbit", "capybara"):
            grown_root = work / f"grown-{label}"
            shutil.copytree(sample, grown_root)
            synthetic.make_image_folder(grown_root, (label,), per_class=GROWTH_SHOTS, size=96)
            held_out = synthetic.make_image_folder(
                work / f"held-out-{label}", (label,), per_class=GROWTH_HELD_OUT, size=96, start=GROWTH_SHOTS
            )
            grown_manifest, _ = prepare_split(grown_root, val_fraction=0.0)
            prior = classes_for_label(label)
            started = time.perf_counter()
            result = train(config, grown_root, grown_manifest.train, [], grown_manifest.classes, parent=parent)
            known = "ImageNet knows it: " + f"{len(prior)} classes" if prior else "ImageNet does not know it"
            print(
                f"growth: {label!r} ({known}), {GROWTH_SHOTS} photos, trained in {time.perf_counter() - started:.1f} s"
            )
            recall = score(result.checkpoint, held_out)["per_class"][label]["recall"]
            print(f"  recall of {label!r} on {GROWTH_HELD_OUT} other photos of it: {recall:.3f}")
            print(row("cats and dogs after growth, photos", score(result.checkpoint, photos)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
