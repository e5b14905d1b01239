"""Latency of the embedded ClearML server at scale, before and after, in one run; and SDK flows (a)+(b).

    .venv/bin/python -m benchmarks.server_latency [--tasks 10000 --models 200 --events 1000000]
                                                  [--requests 100] [--before 9569a34] [--skip-flows]

For each server ("before": the code at commit ``--before``, extracted with ``git archive``; "after": this tree)
a data dir is seeded in bulk through that code's own ``Store`` (tasks in 20 projects with mixed statuses, tags
and names, models, scalar events spread over 100 tasks, and one queue entry per get_next_task call), then
``python -m localserver serve`` is started from that code and measured with 1 and 16 concurrent client
processes (a new connection per request, as the SDK's ``Connection: close`` exchanges do; ``http.client`` by
default, ``--client requests`` for the SDK's client, which costs ~2 ms of CPU per call on the same 2 cores):
- ``tasks.get_all``: project + status filter, ``order_by -last_update``, first page of 50, a few fields;
- ``events.scalar_metrics_iter_histogram`` of a task with 10,000 points; the same request again and again (as
  charts are polled; answered from the server's cache while the task's scalars do not change), and "uncached":
  a different ``samples`` value per call (2,500 and up: the same 10,000 points, a new cache key each time);
- ``tasks.get_by_id`` and ``queues.get_next_task`` (every call pops a real entry) at 16 clients;
- peak server memory growth while an unauthenticated client sends a 1 GB chunked body (psutil).
Goals (issue 13): get_all p95 <= 20 ms, histogram p95 <= 50 ms (1 and 16 clients), get_by_id/get_next_task
p95 <= 20 ms at 16 clients, memory <= +50 MB. Finally flows (a)+(b) run with the real SDK against "after".
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

from benchmarks.common import ROOT, ServerProcess, extract_commit, percentile
from localserver import start_server_process

PROJECTS = 20
EVENT_TASKS = 100
PAGE_SIZE = 50
DISTINCT_SAMPLES = "distinct"
BODY_BYTES = 1 << 30

# Runs with PYTHONPATH at the server's code: seeds through that code's Store (its schema, its columns).
SEED = r"""
import json, random, sys
from datetime import datetime, timedelta, timezone
from localserver.store import Store

data_dir, tasks, models, events, queue_entries = sys.argv[1], *map(int, sys.argv[2:6])
rng = random.Random(13)
store = Store(__import__("pathlib").Path(data_dir) / "localserver.sqlite")
base = datetime(2026, 1, 1, tzinfo=timezone.utc)
stamp = lambda i: (base + timedelta(seconds=i * 37)).isoformat(timespec="microseconds")
statuses = ["created", "queued", "in_progress", "completed", "failed", "stopped", "published"]
projects = [f"project-{p:02d}" for p in range(20)]
with store.transaction():
    for p in projects:
        store.put("projects", {"id": p, "name": p, "basename": p, "parent": None, "path": [], "description": "",
                               "tags": [], "system_tags": [], "created": stamp(0), "last_update": stamp(0),
                               "user": "local-user", "company": ""})
    for i in range(tasks):
        store.put("tasks", {
            "id": f"task-{i:06d}", "name": f"train-{rng.choice(['resnet', 'vit', 'mlp'])}-{i}",
            "type": rng.choice(["training", "data_processing", "controller"]), "status": rng.choice(statuses),
            "status_reason": "", "status_message": "", "status_changed": stamp(i), "comment": "benchmark task",
            "created": stamp(i), "started": stamp(i), "completed": None, "published": None,
            "last_update": stamp(rng.randint(0, tasks)), "last_change": stamp(i), "last_iteration": 100,
            "last_metrics": {"m": {"v": {"metric": "loss", "variant": "train", "value": 0.1}}}, "last_worker": None,
            "active_duration": None, "project": projects[i % len(projects)], "parent": None, "user": "local-user",
            "company": "", "tags": rng.sample(["a", "b", "c", "d"], 2), "system_tags": [],
            "script": {"diff": "print('hello')\n" * 40, "entry_point": "train.py"},
            "execution": {"queue": None, "parameters": {}, "artifacts": []}, "output": {"destination": None},
            "hyperparams": {"General": {"lr": {"section": "General", "name": "lr", "value": "0.1"}}},
            "configuration": {}, "runtime": {"version": "1.0.0"}, "models": {"input": [], "output": []},
            "container": {}})
    for i in range(models):
        store.put("models", {"id": f"model-{i:04d}", "name": f"model-{i}", "uri": "file:///m.bin", "comment": "",
                             "framework": "PyTorch", "design": {}, "labels": {}, "metadata": {}, "tags": [],
                             "system_tags": [], "ready": i % 2 == 0, "task": f"task-{i:06d}", "parent": None,
                             "project": projects[i % len(projects)], "iteration": None, "created": stamp(i),
                             "last_update": stamp(i), "user": "local-user", "company": ""})
    store.put("queues", {"id": "bench-queue", "name": "bench", "created": stamp(0), "last_update": stamp(0),
                         "tags": [], "system_tags": [], "metadata": {}, "user": "local-user", "company": ""})
    for i in range(queue_entries):
        task_id = f"task-{i:06d}"
        doc = store.get("tasks", task_id)
        doc["status"] = "queued"
        store.put("tasks", doc)
        store.add_queue_entry("bench-queue", task_id, stamp(i))
per_task = max(1, events // 100)
variants = 4
for t in range(100):
    batch = [{"task": f"task-{t:06d}", "type": "training_stats_scalar", "metric": "loss", "variant": f"v{n % variants}",
              "iter": n // variants, "value": (n % 97) / 97, "timestamp": 1700000000000 + n} for n in range(per_task)]
    with store.transaction():
        store.add_events(batch)
store.close()
"""


_start_together = None


def _client_process(barrier) -> None:
    global _start_together
    _start_together = barrier


def client(args) -> list[float]:
    """Latencies (ms) of ``count`` calls, each on a new connection, with ``requests`` (what the SDK uses) or the
    standard library's ``http.client`` (about a tenth of the client CPU per call)."""
    port, token, endpoint, body, count, library, index = args
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies = []
    _start_together.wait()  # not while other clients are still starting up (importing) on the same cores
    for call in range(count):
        if body.get("samples") == DISTINCT_SAMPLES:  # a new cache key each call, the same 2,500 points per series
            payload = json.dumps({**body, "samples": 2500 + index * count + call}).encode()
        else:
            payload = json.dumps(body).encode()
        start = time.perf_counter()
        if library == "requests":
            response = requests.post(f"http://127.0.0.1:{port}/v2.23/{endpoint}", data=payload, headers=headers)
            status, text = response.status_code, response.text
        else:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("POST", f"/v2.23/{endpoint}", payload, headers)
            response = connection.getresponse()
            status, text = response.status, response.read().decode()
            connection.close()
        latencies.append((time.perf_counter() - start) * 1000)
        if status != 200:
            raise RuntimeError(f"{endpoint}: {status} {text[:300]}")
    return latencies


def measure(
    pool_context, server: ServerProcess, endpoint: str, body: dict, clients: int, per_client: int, library: str
):
    barrier = pool_context.Barrier(clients)
    with pool_context.Pool(clients, initializer=_client_process, initargs=(barrier,)) as pool:
        arguments = [(server.port, server.token, endpoint, body, per_client, library, k) for k in range(clients)]
        results = pool.map(client, arguments)
    return [latency for latencies in results for latency in latencies]


def unauthenticated_body_growth(server: ServerProcess) -> float:
    """Peak RSS growth (MB) of the server while a client without credentials streams 1 GB chunked."""
    process = psutil.Process(server.process.pid)
    baseline = process.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    chunk = b"x" * (1 << 20)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"POST /v2.23/tasks.get_all HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(BODY_BYTES // len(chunk)):
                sock.sendall(frame)
            sock.sendall(b"0\r\n\r\n")
            sock.recv(1024)
    except OSError:
        pass  # the server may answer and close before the body is sent: what it should do
    time.sleep(0.5)
    done.set()
    sampler.join()
    return (peak - baseline) / 1e6


def run_server(label: str, code_dir: Path, work: Path, args, rows: dict) -> None:
    data_dir = work / label
    data_dir.mkdir()
    queue_entries = 16 * args.requests
    start = time.perf_counter()
    seed_args = [str(data_dir), str(args.tasks), str(args.models), str(args.events), str(queue_entries)]
    subprocess.run(
        [sys.executable, "-c", SEED, *seed_args],
        env={**os.environ, "PYTHONPATH": str(code_dir)},
        cwd=code_dir,
        check=True,
    )
    print(f"{label}: seeded in {time.perf_counter() - start:.0f} s", flush=True)
    server = ServerProcess(code_dir, data_dir)
    pool_context = multiprocessing.get_context("spawn")
    get_all = {
        "project": ["project-03"],
        "status": ["completed", "failed", "stopped"],
        "order_by": ["-last_update"],
        "page": 0,
        "page_size": PAGE_SIZE,
        "only_fields": ["id", "name", "status", "last_update", "tags"],
    }
    histogram = {"task": "task-000007"}
    uncached_histogram = {**histogram, "samples": DISTINCT_SAMPLES}
    try:
        for name, endpoint, body, client_counts in (
            ("tasks.get_all", "tasks.get_all", get_all, (1, 16)),
            ("scalar_iter_histogram", "events.scalar_metrics_iter_histogram", histogram, (1, 16)),
            ("  uncached (new key/call)", "events.scalar_metrics_iter_histogram", uncached_histogram, (1, 16)),
            ("tasks.get_by_id", "tasks.get_by_id", {"task": "task-000042"}, (16,)),
            ("queues.get_next_task", "queues.get_next_task", {"queue": "bench-queue"}, (16,)),
        ):
            for clients in client_counts:
                latencies = measure(pool_context, server, endpoint, body, clients, args.requests, args.client)
                rows.setdefault((name, clients), {})[label] = percentile(latencies, 95)
                print(f"  {label} {name} x{clients}: p95 {rows[(name, clients)][label]:.1f} ms", flush=True)
        rows.setdefault(("unauth 1 GB body: +MB", 1), {})[label] = unauthenticated_body_growth(server)
    finally:
        server.stop()


FLOWS = """
import pathlib, tempfile
from clearml import Dataset, OutputModel, Task

work = pathlib.Path(tempfile.mkdtemp())
task = Task.init(project_name="bench", task_name="flow-a", reuse_last_task_id=False, output_uri=True)
task.connect({"lr": 0.1})
for i in range(10):
    task.get_logger().report_scalar("loss", "train", 1.0 / (i + 1), iteration=i)
task.upload_artifact("summary", {"ok": True}, wait_on_upload=True)
(work / "model.bin").write_bytes(b"w" * 100000)
model = OutputModel(task=task, name="bench-model", framework="PyTorch", tags=["production"])
model.update_weights(str(work / "model.bin"))
model.publish()
task.close()
parent = None
for version in (1, 2):
    folder = work / f"v{version}"
    folder.mkdir()
    (folder / f"file{version}.txt").write_text(str(version))
    dataset = Dataset.create(dataset_name="bench-data", dataset_project="bench",
                             parent_datasets=[parent] if parent else None)
    dataset.add_files(folder)
    dataset.upload()
    dataset.finalize()
    parent = dataset.id
latest = Dataset.get(dataset_project="bench", dataset_name="bench-data", only_completed=True)
assert latest.id == parent
assert len(list(pathlib.Path(latest.get_local_copy()).rglob("*.txt"))) == 2
"""


def run_flows(work: Path) -> None:
    server = start_server_process(work / "flows-server", port=0)
    try:
        flows = work / "flows.py"
        flows.write_text(FLOWS)
        env = {**os.environ, **server.client_env(), "HOME": str(work / "home"), "CLEARML_TASK_NO_REUSE": "1"}
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(flows)], env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise SystemExit(f"flows failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        print(f"flows (a)+(b) wall time: {time.perf_counter() - start:.1f} s (one process: Python start, SDK, exit)")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--events", type=int, default=1_000_000, help="scalar events, over 100 tasks")
    parser.add_argument("--requests", type=int, default=100, help="requests per client per measurement")
    parser.add_argument("--before", default="9569a34", help="commit of the 'before' server")
    parser.add_argument(
        "--client",
        choices=["http.client", "requests"],
        default="http.client",
        help="HTTP client of the measuring processes: requests costs ~2 ms of CPU per call here, which on 2 cores"
        " caps 16 clients below the server's own rate",
    )
    parser.add_argument("--skip-flows", action="store_true", help="only the latency table")
    args = parser.parse_args()
    if args.tasks < 16 * args.requests + 100:
        parser.error("--tasks must cover the queue entries (16 x --requests) and the 100 event tasks")
    work = Path(tempfile.mkdtemp(prefix="server-latency-"))
    rows: dict = {}
    print(f"cpus: {os.cpu_count()}  tasks {args.tasks}  models {args.models}  events {args.events}")
    run_server("before", extract_commit(args.before, work / "before-code", "localserver"), work, args, rows)
    run_server("after", ROOT, work, args, rows)
    print(f"\n{'measure':<26}{'clients':>8}{'before p95 ms':>15}{'after p95 ms':>14}{'goal':>8}")
    goals = {
        "tasks.get_all": 20,
        "scalar_iter_histogram": 50,
        "  uncached (new key/call)": 50,
        "tasks.get_by_id": 20,
        "queues.get_next_task": 20,
    }
    for (name, clients), values in rows.items():
        goal = goals.get(name, 50)
        print(
            f"{name:<26}{clients:>8}{values.get('before', float('nan')):>15.1f}"
            f"{values.get('after', float('nan')):>14.1f}{goal:>8}"
        )
    if not args.skip_flows:
        run_flows(work)


if __name__ == "__main__":
    main()
