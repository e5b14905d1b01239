"""Latency from `finalize()` of a feedback dataset version to the new `production` model, and where it goes.

Everything runs for real on this machine: the embedded server (a subprocess), two clearml-agent daemons in this
Python environment (`services` in services mode for the scheduler and the pipeline controllers, `default` for
every step, training included, as a CPU machine has no GPU queue), the TriggerScheduler as a service task, and
the pipeline in `head` mode. The base version (1,000 generated 64 px images of cats and dogs) is trained once
first, untimed, which also fills the embedding cache; then each feedback version adds new images (a new class
in the first one) and is timed from `finalize()` until a model trained on it carries the production tag.

With `--before COMMIT`, the whole project at that commit (extracted with `git archive`) runs the same benchmark
first, with the same settings, in its own server, agents and caches; then this tree does; the medians are
printed side by side at the end.

    python -m benchmarks.feedback_to_production [--base-images 1000] [--feedback-images 20] [--repeats 2]
                                                [--before c247086]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchmarks.common import ROOT, extract_commit
from devstack.agents import DEFAULT_POLL_SECONDS
from devstack.run import TRIGGER_POLL_MINUTES
from pipelines.retrain import DEFAULT_POOL_MINUTES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-images", type=int, default=1000)
    parser.add_argument("--feedback-images", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    # The dev stack's settings (`make run`), so the figure is what a user of it sees.
    parser.add_argument("--trigger-poll-minutes", type=float, default=TRIGGER_POLL_MINUTES)
    parser.add_argument("--pipeline-pool-minutes", type=float, default=DEFAULT_POOL_MINUTES)
    parser.add_argument("--agent-poll-seconds", type=float, default=DEFAULT_POLL_SECONDS)
    parser.add_argument("--before", help="also run the project at this commit first, with the same settings")
    args = parser.parse_args()
    if args.before:
        before = run_before(args)
        after = run_here(args)
        print(f"\nmedian finalize() -> new production model: before ({args.before}) {before:.1f} s, now {after:.1f} s")
    else:
        run_here(args)


def run_before(args) -> float:
    """The benchmark of the project at `args.before`, in a subprocess on its own extracted tree; its median."""
    with tempfile.TemporaryDirectory(prefix="feedback-bench-before-") as tmp:
        code = extract_commit(args.before, Path(tmp))
        options = [f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items() if name != "before"]
        print(f"== before: the project at {args.before}", flush=True)
        # PYTHONPATH puts the extracted packages before the installed (editable) ones, for the agents' tasks too.
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.feedback_to_production", *options],
            cwd=code,
            env={**os.environ, "PYTHONPATH": str(code)},
            capture_output=True,
            text=True,
        )
        print(result.stdout[-20000:], flush=True)
        if result.returncode:
            raise SystemExit(f"the 'before' benchmark failed ({result.returncode}):\n{result.stderr[-4000:]}")
        median = re.search(r"\(median ([0-9.]+) s\)", result.stdout)
        return float(median[1])


def run_here(args) -> float:
    """The benchmark of this tree, in this process; the median latency."""
    print("== now: this tree", flush=True)

    from localserver import start_server_process

    work = Path(tempfile.mkdtemp(prefix="feedback-bench-"))
    server = start_server_process(work / "server")
    env = server.client_env(config_file=server.write_client_config(work / "clearml.conf"))
    env.update(CLASSIFIER_PIPELINE_POOL_MINUTES=str(args.pipeline_pool_minutes))
    os.environ.update(env, HOME=str(work / "home"), CLEARML_TASK_NO_REUSE="1")
    started_agents = []
    try:
        started_agents = start_agents(env, work, args.agent_poll_seconds)
        return run(args, env, work)
    finally:
        for agent in started_agents:
            agent.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def start_agents(env: dict, work: Path, poll: float) -> list:
    from devstack.agents import start_agent

    return [
        start_agent(env, work / "agents", queue="services", services_mode=True, create_queue=True, poll_sec=poll),
        start_agent(env, work / "agents", queue="default", create_queue=True, poll_sec=poll),
    ]


def run(args, env: dict, work: Path) -> float:
    from clearml import Task

    from classifier.synthetic import make_image_folder
    from common.waiting import wait_until
    from loop import datasets, registry
    from pipelines import retrain
    from tasks import register

    def module(*command: str) -> None:
        subprocess.run(
            [sys.executable, "-m", *command],
            env={**os.environ, **env},
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    register.register_templates()
    module("pipelines.retrain", "register", "--mode", "head", "--epochs", str(args.epochs), "--train-queue", "default")
    per_class = args.base_images // 2
    base = datasets.create_version(make_image_folder(work / "data" / "base", ["cat", "dog"], per_class))
    started = time.perf_counter()
    run_id = retrain.enqueue_run(base)
    wait_until(lambda: Task.get_task(task_id=run_id).status in ("completed", "failed"), 1800, "the base run")
    assert Task.get_task(task_id=run_id).status == "completed", "the base pipeline run failed"
    print(f"base version ({args.base_images} images) trained and promoted in {time.perf_counter() - started:.1f} s")

    module("triggers.retrain_trigger", "--poll-minutes", str(args.trigger_poll_minutes))
    latencies = []
    for repeat in range(args.repeats):
        production = registry.production_model().id
        classes = ["rabbit"] if repeat == 0 else ["cat", "dog", "rabbit"]
        count = max(1, args.feedback_images // len(classes))
        folder = make_image_folder(work / "data" / f"feedback-{repeat}", classes, count, start=1000 * (repeat + 1))
        version = datasets.create_version(folder, parent_id=datasets.latest_version_id())
        finalized = time.perf_counter()
        wait_until(
            lambda old=production: (m := registry.production_model()) and m.id != old, 600, "a new model", interval=0.25
        )
        latency = time.perf_counter() - finalized
        latencies.append(latency)
        model = registry.production_model()
        assert model.metadata["dataset_id"] == version, "production moved to a model of another version"
        print(
            f"\nfeedback version {repeat + 1}: {count * len(classes)} new images {classes} -> "
            f"production model {model.id} ({len(model.labels)} classes) after {latency:.1f} s"
        )
        breakdown(version, model)
    print(
        f"\nfinalize() -> new production model: {', '.join(f'{v:.1f}' for v in latencies)} s "
        f"(median {statistics.median(latencies):.1f} s) on {os.cpu_count()} CPU cores"
    )
    return statistics.median(latencies)


def breakdown(version_id: str, model) -> None:
    """Where the time went, from the server's timestamps of the tasks involved."""
    from clearml import Task

    from common.waiting import wait_until
    from loop import settings, stages
    from tasks import STAGES

    dataset = Task.get_task(task_id=version_id)
    runs = [
        t
        for t in stages.find_tasks(settings.PIPELINE_PROJECT, None)
        if t.get_parameter("Args/dataset_id") == version_id
    ]
    # The production tag moves inside the last step; wait for the run to end to read every timestamp.
    wait_until(lambda: Task.get_task(task_id=runs[0].id).status in ("completed", "failed"), 300, "the run")
    controller = Task.get_task(task_id=runs[0].id)
    steps = {t.name: t for t in Task.get_tasks(task_filter={"parent": controller.id, "search_hidden": True})}
    rows = [
        ("trigger poll: finalize -> pipeline run cloned", dataset.data.completed, controller.data.created),
        ("services agent: run queued -> controller started", controller.data.created, controller.data.started),
    ]
    previous = controller.data.started
    for name in STAGES:
        step = steps[name]
        rows.append((f"{name}: controller -> step created", previous, step.data.created))
        rows.append((f"{name}: agent poll (queued -> started)", step.data.created, step.data.started))
        rows.append((f"{name}: process (started -> completed)", step.data.started, step.data.completed))
        previous = step.data.completed
    rows.append(("controller: last step -> run completed", previous, controller.data.completed))
    for label, start, end in rows:
        print(f"  {label:<52} {seconds(start, end):6.1f} s")
    metrics = model.metadata.get("val_metrics") or {}
    print(
        f"  {'  inside train: embedding pass':<52} {metrics.get('embedding_seconds', 0):6.1f} s "
        f"({metrics.get('embeddings_computed', 0)} computed, {metrics.get('embeddings_cached', 0)} cached)"
    )
    print(f"  {'  inside train: embeddings + head training':<52} {metrics.get('train_seconds', 0):6.1f} s")
    upload = steps["train"].get_reported_single_values().get("upload_seconds")
    if upload is not None:
        print(f"  {'  inside train: model upload':<52} {upload:6.1f} s")


def seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


if __name__ == "__main__":
    main()
