"""Migrating a ClearML server's history onto another (`python -m loop.migrate`): wall time, peak memory, and which
phase dominates.

    python -m benchmarks.migrate [--tasks 1000] [--scalars 100] [--models 50] [--model-mb 14]
                                 [--dataset-versions 20] [--files 50]
    python -m benchmarks.migrate --make-datasets FOLDER --dataset-versions N --files N   # what the fill runs

Everything runs for real on this machine: two embedded servers (subprocesses on 127.0.0.1), a source and an empty
target. The source is filled first (timed apart; not part of the figure): the tasks through the REST API, each
with hyperparameters and `--scalars` scalar points, completed; the models, each with a `--model-mb` MB weights
file of random bytes (14 MB is about an EfficientNet-Lite0 checkpoint), the last one tagged production; and a
chain of dataset versions of `--files` small PNGs each, made by the SDK in a subprocess, as datasets really are.

Then `python -m loop.migrate --no-verify --quiet` copies it: the figure's copy part. A second run of the same
command without `--no-verify` finds everything copied and verifies: the other part. Printed: the fill time, both
runs' own output (their `time:` line splits the copy by phase), and a summary: wall time and peak RSS of each
run (of its largest process, and of its processes together), objects per second, and whether copy +
verification is within the goal of 10 minutes (set on 2 CPU cores). Exits non-zero when a run fails or the
verification finds differences; the servers' data and logs are then kept.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from benchmarks.common import ROOT
from devstack.processes import environ_without_clearml
from localserver import start_server_process
from loop import settings
from loop.migrate.server import Endpoint, Server

GOAL_S = 600.0
SAMPLE_S = 0.1  # how often the process tree's RSS is read
LEARNING_RATES = ("0.1", "0.03", "0.01", "0.003")


@dataclass
class Run:
    """One `python -m loop.migrate` run as measured from outside."""

    code: int
    seconds: float
    output: str
    largest_rss: int  # bytes, the peak of its largest process
    tree_rss: int  # bytes, the peak of all its processes together (sampled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--scalars", type=int, default=100, help="scalar points per task")
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--model-mb", type=float, default=14, help="size of each model's weights file")
    parser.add_argument("--dataset-versions", type=int, default=20)
    parser.add_argument("--files", type=int, default=50, help="files added by each dataset version")
    parser.add_argument(
        "--make-datasets", type=Path, metavar="FOLDER", help="only make the dataset versions, their files in FOLDER"
    )
    args = parser.parse_args()
    if args.make_datasets:
        make_datasets(args.dataset_versions, args.files, args.make_datasets)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-migrate-"))
    servers = []
    try:
        for name in ("source", "target"):
            servers.append(start_server_process(work / name))
        source, target = (server.write_client_config(server.data_dir / "clearml.conf") for server in servers)
        fill(args, source, work)
        failed = migrate(source, target, work)
    finally:
        for server in servers:
            server.stop()
    if failed:
        raise SystemExit(f"{failed}; the servers' data and logs are kept in {work}")
    shutil.rmtree(work)


# -- the source's history ---------------------------------------------------------------------------------------


def fill(args, source_config: Path, work: Path) -> None:
    started = time.perf_counter()
    source = Server(Endpoint.from_config(source_config))
    try:
        project = source.call("projects.create", name=settings.PROJECT, description="benchmarks.migrate")["id"]
        task_ids = [make_task(source, project, index, args.scalars) for index in range(args.tasks)]
        tasks_done = time.perf_counter()
        for index in range(args.models):
            make_model(source, project, task_ids[index % len(task_ids)], index, args.models, args.model_mb)
    finally:
        source.close()
    models_done = time.perf_counter()
    command = [sys.executable, "-m", "benchmarks.migrate", "--make-datasets", str(work / "dataset-files")]
    command += ["--dataset-versions", str(args.dataset_versions), "--files", str(args.files)]
    result = subprocess.run(command, env=client_env(work, source_config), cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"making the dataset versions failed ({result.returncode}):\n{result.stderr[-4000:]}")
    print(
        f"source filled in {time.perf_counter() - started:.1f} s (not part of the figure): "
        f"{args.tasks} tasks of {args.scalars} scalar points in {tasks_done - started:.1f} s, "
        f"{args.models} models of {args.model_mb:g} MB in {models_done - tasks_done:.1f} s, "
        f"{args.dataset_versions} dataset versions of {args.files} files in {time.perf_counter() - models_done:.1f} s",
        flush=True,
    )


def make_task(source: Server, project: str, index: int, scalars: int) -> str:
    """A completed training task with hyperparameters and a loss curve of `scalars` points; its id."""
    task = source.call("tasks.create", name=f"train-{index:04d}", type="training", project=project)["id"]
    hyperparams = {
        name: {"section": "General", "name": name, "value": value, "type": kind}
        for name, value, kind in (("lr", LEARNING_RATES[index % 4], "float"), ("epochs", "10", "int"))
    }
    source.call("tasks.edit", task=task, hyperparams={"General": hyperparams})
    now_ms = int(time.time() * 1000)
    events = [
        {
            "task": task,
            "type": "training_stats_scalar",
            "timestamp": now_ms + step,
            "iter": step,
            "metric": "loss",
            "variant": "train",
            "value": 1.0 / (step + 1),
        }
        for step in range(scalars)
    ]
    source.send_lines("events.add_batch", events)
    source.call("tasks.started", task=task, force=True)
    source.call("tasks.completed", task=task, force=True)
    return task


def make_model(source: Server, project: str, task: str, index: int, count: int, megabytes: float) -> None:
    """A published model of `task` with a weights file of random bytes; the last of `count` is production."""
    name = f"model-{index:03d}"
    weights = io.BytesIO(os.urandom(int(megabytes * 1e6)))
    url = source.upload(f"{settings.PROJECT}/models/{name}.pt", weights, f"{name}.pt")
    tags = ["benchmark", *([settings.PRODUCTION_TAG] if index == count - 1 else [])]
    source.call(
        "models.create",
        name=name,
        uri=url,
        project=project,
        task=task,
        labels={"cat": 0, "dog": 1},
        tags=tags,
        ready=True,
    )


def make_datasets(versions: int, files: int, folder: Path) -> None:
    """A chain of `versions` dataset versions (each the parent of the next), each adding `files` small PNGs
    written under `folder`; run in a process of its own (`--make-datasets`), the SDK configured for the source
    by CLEARML_CONFIG_FILE."""
    from clearml import Dataset

    rng = np.random.default_rng(0)
    parent = None
    for version in range(versions):
        images = folder / f"version-{version:02d}"
        images.mkdir(parents=True)
        for index in range(files):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # noise: about 3 KB as a PNG
            Image.fromarray(pixels).save(images / f"{version:02d}-{index:03d}.png")
        dataset = Dataset.create(
            dataset_project=settings.DATASET_PROJECT,
            dataset_name=settings.DATASET_NAME,
            parent_datasets=[parent] if parent else None,
        )
        dataset.add_files(images)
        dataset.upload()
        dataset.finalize()
        parent = dataset.id


def client_env(work: Path, config: Path | None = None) -> dict[str, str]:
    """This environment without the ClearML variables (they would override the configuration files), with a
    HOME of its own (the SDK caches downloads there)."""
    return environ_without_clearml(HOME=str(work / "home"), **({"CLEARML_CONFIG_FILE": str(config)} if config else {}))


# -- the migration ----------------------------------------------------------------------------------------------


def migrate(source_config: Path, target_config: Path, work: Path) -> str:
    """Copy, then verify; prints both runs' output and the summary; what failed, or '' when nothing did."""
    command = [sys.executable, "-m", "loop.migrate", "--from", str(source_config), "--to", str(target_config)]
    copy_command = [*command, "--no-verify", "--quiet"]
    print("\n== copy: python " + " ".join(copy_command[1:]), flush=True)
    copy = timed_run(copy_command, client_env(work), work / "copy.log")
    print(copy.output, end="", flush=True)
    if copy.code:
        return f"the copy failed (exit code {copy.code})"
    check_command = [*command, "--quiet"]  # the second run finds everything copied, then verifies
    print("\n== verification: python " + " ".join(check_command[1:]), flush=True)
    check = timed_run(check_command, client_env(work), work / "verification.log")
    print(check.output, end="", flush=True)
    summary(copy, check)
    return f"the verification failed (exit code {check.code})" if check.code else ""


def timed_run(command: list[str], env: dict[str, str], log: Path) -> Run:
    """`command` to its end, its output captured (its stderr into `log`: the SDK's download bars); wall time and
    peak memory."""
    started = time.perf_counter()
    with open(log, "w") as errors:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True)
    peaks = {"largest": 0, "tree": 0}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_tree, args=(process.pid, peaks, stop), daemon=True)
    sampler.start()
    output = process.stdout.read()
    process.wait()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    process.stdout.close()
    if process.returncode:
        print(log.read_text()[-4000:], file=sys.stderr)
    return Run(process.returncode, seconds, output, peaks["largest"], peaks["tree"])


def sample_tree(pid: int, peaks: dict[str, int], stop: threading.Event) -> None:
    """Until `stop`, the peak memory of process `pid` and its descendants into `peaks`: "largest", the highest
    VmHWM (the kernel's own peak RSS of one process, exact once read after it); "tree", the highest sum of their
    RSS at one time (the verification's two readers run side by side). Not `ru_maxrss`: a child's starts at its
    parent's peak (exec keeps it), and this process is larger than the copy."""
    root = psutil.Process(pid)
    while not stop.wait(SAMPLE_S):
        try:
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        memory = [proc_memory(process.pid) for process in processes]
        peaks["largest"] = max(peaks["largest"], *(hwm for hwm, _ in memory))
        peaks["tree"] = max(peaks["tree"], sum(rss for _, rss in memory))


def proc_memory(pid: int) -> tuple[int, int]:
    """Peak and current RSS of process `pid` in bytes, from /proc; zeros once it has ended."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0, 0
    kilobytes = {
        key: int(value.split()[0])
        for key, _, value in (line.partition(":") for line in lines)
        if key in ("VmHWM", "VmRSS")
    }
    return kilobytes.get("VmHWM", 0) * 1024, kilobytes.get("VmRSS", 0) * 1024


def summary(copy: Run, check: Run) -> None:
    copied = {kind: int(found(rf"^{kind}: (\d+) copied", copy.output)) for kind in ("tasks", "models")}
    events = int(found(r"^with (\d+) events", copy.output))
    megabytes = float(found(r"files \(([\d.]+) MB\)", copy.output))
    phases = {
        phase: float(seconds)
        for phase, seconds in re.findall(r"(?:time: |, )([a-z ]+) ([\d.]+) s", found(r"^(time: .*)$", copy.output))
    }
    slowest = max(phases, key=phases.get)
    total = copy.seconds + check.seconds
    objects = sum(copied.values())
    print(f"\n== summary ({os.cpu_count()} CPU cores)")
    print(f"copy          {copy.seconds:7.1f} s   peak RSS {rss(copy)}")
    print(f"verification  {check.seconds:7.1f} s   peak RSS {rss(check)}")
    print(f"total         {total:7.1f} s   goal <= {GOAL_S:.0f} s: {'met' if total <= GOAL_S else 'MISSED'}")
    print(
        f"throughput    {objects / copy.seconds:.1f} objects/s ({copied['tasks']} tasks, {copied['models']} models), "
        f"{events / copy.seconds:.0f} events/s, {megabytes / copy.seconds:.1f} MB/s of files"
    )
    print(
        f"dominant      the copy's {slowest} phase: {phases[slowest]:.1f} s of {copy.seconds:.1f} s "
        f"({phases[slowest] / copy.seconds:.0%}); verification is {check.seconds / total:.0%} of the total"
    )


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no {pattern!r} in the migration's output")
    return match[1]


def rss(run: Run) -> str:
    return f"{run.largest_rss / 1e6:.0f} MB largest process, {run.tree_rss / 1e6:.0f} MB all processes at once"


if __name__ == "__main__":
    main()
