"""Latency of the embedded ClearML server and the wall time of SDK flows (a)+(b) against it.

    .venv/bin/python benchmarks/server_latency.py [--requests 300]

Starts ``python -m localserver serve`` on a free port in a temporary data dir, then measures p50/p95 of
``tasks.get_by_id`` and ``queues.get_next_task`` (every call pops a real entry) with 1 and 4 concurrent client
processes (one new HTTP connection per request, as the SDK's ``Connection: close`` exchanges do), and finally
runs flow (a) (Task.init, scalars, artifact, OutputModel, publish, close) and flow (b) (two dataset versions,
get, get_local_copy, list) with the real SDK in a subprocess. Goal from issue 2: p95 <= 20 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from localserver import start_server_process  # noqa: E402


def login(api_url: str, access_key: str, secret_key: str) -> str:
    response = requests.get(f"{api_url}/auth.login", auth=(access_key, secret_key), timeout=10)
    return response.json()["data"]["token"]


def call(api_url: str, token: str, endpoint: str, **body) -> dict:
    response = requests.post(
        f"{api_url}/v2.23/{endpoint}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    response.raise_for_status()
    return response.json()["data"]


def client(args) -> list[float]:
    api_url, token, endpoint, body, count = args
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        response = requests.post(  # a fresh connection per request: the server closes each one
            f"{api_url}/v2.23/{endpoint}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        latencies.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{endpoint}: {response.status_code} {response.text}")
    return latencies


def measure(api_url, token, endpoint, body, clients: int, per_client: int) -> list[float]:
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        results = pool.map(client, [(api_url, token, endpoint, body, per_client)] * clients)
    return [latency for latencies in results for latency in latencies]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


FLOWS = """
import os, pathlib, tempfile
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
assert len(Dataset.list_datasets(dataset_project="bench", partial_name="bench-data")) == 2
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per client per measurement")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="server-latency-"))
    server = start_server_process(work / "server", port=0)
    try:
        token = login(server.api_url, server.access_key, server.secret_key)
        task_id = call(server.api_url, token, "tasks.create", name="bench", type="training")["id"]
        call(server.api_url, token, "tasks.edit", task=task_id, hyperparams={"General": {"lr": {"value": "1"}}})
        print(f"cpus: {os.cpu_count()}  requests per client: {args.requests}")
        print(f"{'endpoint':<24}{'clients':>8}{'requests':>10}{'p50 ms':>9}{'p95 ms':>9}")
        for clients in (1, 4):
            queue_id = call(server.api_url, token, "queues.create", name=f"bench-{clients}")["id"]
            for index in range(clients * args.requests):
                popped = call(server.api_url, token, "tasks.create", name=f"q{index}", type="training")["id"]
                call(server.api_url, token, "tasks.enqueue", task=popped, queue=queue_id)
            for endpoint, body in (
                ("tasks.get_by_id", {"task": task_id}),
                ("queues.get_next_task", {"queue": queue_id}),
            ):
                latencies = measure(server.api_url, token, endpoint, body, clients, args.requests)
                p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
                print(f"{endpoint:<24}{clients:>8}{len(latencies):>10}{p50:>9.2f}{p95:>9.2f}")
            assert call(server.api_url, token, "queues.get_num_entries", queue=queue_id)["num"] == 0

        flows = work / "flows.py"
        flows.write_text(FLOWS)
        env = {**os.environ, **server.client_env(), "HOME": str(work / "home"), "CLEARML_TASK_NO_REUSE": "1"}
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(flows)], env=env, capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"flows failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        print(f"flows (a)+(b) wall time: {wall:.1f} s (one process: Python start, SDK, exit)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
