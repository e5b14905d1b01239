"""Training throughput: the real data loader vs. the same training step on synthetic tensors; `head` retrain time
on cached embeddings; embedding pass rate.

    python -m benchmarks.training_throughput                      # CPU here: both backbones, 224 px
    python -m benchmarks.training_throughput --device cuda --batch-size 128 --steps 30 --num-workers 12

The real loader reads generated JPEGs (PetImages-like size, --source-size) from disk, decodes them with
`images.decode_image`, applies the seed augmentation and feeds `FullTrainStep`, the step `train()` uses. The
synthetic run feeds the same step with tensors already in memory, so ratio = real / synthetic shows how much the
input pipeline costs (goal >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from classifier import synthetic
from classifier.backbones import SPECS
from classifier.data import scan_folder, split_by_hash
from classifier.embeddings import EmbeddingCache, compute_embeddings
from classifier.model import build_model
from classifier.preprocess import ImageFileDataset, make_loader, resolve_workers, train_transform
from classifier.runtime import resolve_device
from classifier.train import FullTrainStep, TrainConfig, train


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_steps(step: FullTrainStep, batches, steps: int) -> tuple[float, float]:
    """(images per second, CPU seconds of this process per image) over the next `steps` batches; the wall
    time includes waiting for the loader."""
    _sync(step.device)
    started, cpu_started = time.perf_counter(), time.process_time()
    seen = 0
    for _ in range(steps):
        images, targets = next(batches)
        step(images, targets)
        seen += len(targets)
    _sync(step.device)
    return seen / (time.perf_counter() - started), (time.process_time() - cpu_started) / seen


def _loader_cpu_per_image(dataset: ImageFileDataset, count: int) -> float:
    """CPU seconds to read, decode and augment one image (in this process, one thread)."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    started = time.process_time()
    for i in range(count):
        dataset[i % len(dataset)]
    torch.set_num_threads(torch_threads)
    return (time.process_time() - started) / count


def _forever(loader):
    while True:
        yield from loader


def throughput(backbone: str, folder: Path, args, device: torch.device) -> dict:
    """Alternate real-loader and synthetic-tensor rounds and take the median of each, so load from other
    processes on the machine hits both sides alike."""
    config = TrainConfig(
        backbone=backbone,
        pretrained=False,
        batch_size=args.batch_size,
        image_size=args.image_size,
        num_workers=args.num_workers,
        device=str(device),
        progress=False,
    )
    model = build_model(backbone, 2, pretrained=False)
    step = FullTrainStep(model.train(), config, device)
    spec = model.spec
    size = config.input_size()

    files = scan_folder(folder)
    dataset = ImageFileDataset(folder, files, ["cat", "dog"], train_transform(size, spec.mean, spec.std))
    real_batches = _forever(make_loader(dataset, args.batch_size, True, args.num_workers, device, drop_last=True))
    images = torch.randn(args.batch_size, 3, size, size)
    targets = torch.randint(0, 2, (args.batch_size,))
    if device.type == "cuda":  # what a perfect loader would hand over: pinned host memory
        images, targets = images.pin_memory(), targets.pin_memory()
    fake_batches = iter(lambda: (images, targets), None)

    for _ in range(args.warmup):  # worker start-up, cuDNN autotuning, allocator warm-up
        step(*next(real_batches))
        step(*next(fake_batches))
    real, fake, step_cpu = [], [], []
    for _ in range(args.rounds):
        real.append(_timed_steps(step, real_batches, args.steps)[0])
        rate, cpu = _timed_steps(step, fake_batches, args.steps)
        fake.append(rate)
        step_cpu.append(cpu)
    real_rate, fake_rate = statistics.median(real), statistics.median(fake)
    loader_cpu = _loader_cpu_per_image(dataset, args.batch_size * 2)
    train_cpu = statistics.median(step_cpu)
    return {
        "backbone": backbone,
        "image_size": size,
        "real_loader_img_s": real_rate,
        "synthetic_img_s": fake_rate,
        "ratio": real_rate / fake_rate,
        "rounds_real": real,
        "rounds_synthetic": fake,
        "loader_cpu_ms_per_img": loader_cpu * 1000,
        "train_step_cpu_ms_per_img": train_cpu * 1000,
        # When loader and model share the same cores, every CPU second the loader takes is lost to training.
        "cpu_bound_ratio": train_cpu / (train_cpu + loader_cpu),
    }


def head_and_embedding(folder: Path, args, device: torch.device) -> dict:
    files = scan_folder(folder)
    train_files, val_files = split_by_hash(files)
    with tempfile.TemporaryDirectory() as cache_dir:
        config = TrainConfig(
            backbone=args.head_backbone,
            mode="head",
            batch_size=args.batch_size,
            image_size=args.image_size,
            num_workers=args.num_workers,
            device=str(device),
            embedding_cache_dir=cache_dir,
            progress=False,
        )
        model = build_model(config.backbone, 2, pretrained=config.pretrained)
        _, stats = compute_embeddings(
            model,
            folder,
            files,
            config.input_size(),
            EmbeddingCache(cache_dir),
            device,
            batch_size=args.batch_size * 2,
            num_workers=args.num_workers,
            progress=False,
        )
        started = time.perf_counter()
        result = train(config, folder, train_files, val_files, ["cat", "dog"])
        retrain = time.perf_counter() - started
    assert result.metrics["embeddings_computed"] == 0, "the retrain should have found every embedding cached"
    return {
        "head_backbone": config.backbone,
        "embedded_images": stats["embeddings_computed"],
        "embedding_img_s": stats["embedding_images_per_s"],
        "head_retrain_s": retrain,
        "head_retrain_images": len(files),
        "head_epochs": config.epochs,
        "head_val_accuracy": result.metrics["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbones", default=",".join(SPECS), help="comma-separated")
    parser.add_argument("--image-size", type=int, default=0, help="0: each backbone's input size (224)")
    parser.add_argument("--source-size", type=int, default=384, help="side of the generated JPEGs on disk")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round and side")
    parser.add_argument("--rounds", type=int, default=3, help="alternating real/synthetic rounds (median taken)")
    parser.add_argument("--num-workers", type=int, default=-1, help="-1: one per core, at most 16")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--head-images", type=int, default=1000, help="images embedded, then used by the retrain")
    parser.add_argument("--head-backbone", default="efficientnet_lite0")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-head", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device {device} ({name}), torch threads {torch.get_num_threads()}, "
        f"loader workers {resolve_workers(args.num_workers)}, batch {args.batch_size}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )

    figures: dict = {"device": name, "batch_size": args.batch_size, "workers": resolve_workers(args.num_workers)}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_throughput:
            count = args.batch_size * (args.warmup + args.steps * args.rounds)
            folder = synthetic.make_image_folder(
                Path(tmp) / "throughput", ("cat", "dog"), per_class=count // 2 + 1, size=args.source_size
            )
            figures["throughput"] = []
            for backbone in args.backbones.split(","):
                row = throughput(backbone, folder, args, device)
                figures["throughput"].append(row)
                print(
                    f"{backbone:>20} {row['image_size']}px  real loader {row['real_loader_img_s']:8.1f} img/s  "
                    f"synthetic tensors {row['synthetic_img_s']:8.1f} img/s  ratio {row['ratio']:.3f}  |  "
                    f"CPU ms/img: loader {row['loader_cpu_ms_per_img']:.1f}, train step "
                    f"{row['train_step_cpu_ms_per_img']:.1f} -> shared-core ratio {row['cpu_bound_ratio']:.3f}"
                )
        if not args.skip_head:
            folder = synthetic.make_image_folder(
                Path(tmp) / "head", ("cat", "dog"), per_class=args.head_images // 2, size=args.source_size
            )
            row = head_and_embedding(folder, args, device)
            figures["head"] = row
            print(
                f"embedding pass ({row['head_backbone']}): {row['embedding_img_s']:.1f} img/s "
                f"over {row['embedded_images']} images"
            )
            print(
                f"head retrain on {row['head_retrain_images']} cached embeddings, {row['head_epochs']} epochs: "
                f"{row['head_retrain_s']:.2f} s (val accuracy {row['head_val_accuracy']:.3f})"
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
