"""Server time of the web UI's pages on a large store (issue 10's goals: p95 <= 100 ms for the tasks table and
a task page; <= 300 ms for the scalars chart data of a 100,000-point series, downsampled).

    .venv/bin/python -m benchmarks.webui_latency [--tasks 5000] [--models 200] [--events 1000000] [--requests 30]

Seeds a temporary store in bulk (:func:`seed`: one project of ``--tasks`` tasks with last metrics, ``--models``
models, ``--events`` scalar events of which 100,000 form one series of one task, the rest spread over other
tasks), then requests each page in-process through the ASGI app (Starlette's TestClient: the server's time
without network), signed in, and prints p50/p95/max per page.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from starlette.applications import Starlette
from starlette.testclient import TestClient

from benchmarks.common import percentile
from localserver import LocalServer, task_entity
from localserver.api import Context, events, new_id
from localserver.api import models as models_api
from localserver.api import projects as projects_api
from localserver.api import tasks as tasks_api
from localserver.users import ADMIN_ID
from localserver.webui import routes

LONG_SERIES = 100_000
BATCH = 50_000


def seed(server: LocalServer, tasks: int, models: int, scalar_events: int) -> dict:
    """Bulk-load the store directly (documents shaped by the API's own constructors); the one place that knows
    the store's write methods. Returns the ids the measurements use."""
    store = server.store
    ctx = Context(store, ADMIN_ID, None, server)
    with store.transaction():
        project = projects_api.ensure_project(ctx, "bench/large")
        task_ids = []
        for index in range(tasks):
            doc = task_entity.new_document(new_id(), ADMIN_ID, tasks_api.now())
            doc.update(name=f"run-{index:05d}", project=project["id"], type="training")
            doc.update(status="completed", started=doc["created"], completed=doc["created"], last_iteration=99)
            doc["hyperparams"] = {
                "General": {
                    k: {"section": "General", "name": k, "value": str(v)} for k, v in (("lr", 0.1), ("epochs", 10))
                }
            }
            for metric, variant, value in (("loss", "train", 1 / (index + 1)), ("accuracy", "val", index / tasks)):
                events._update_last_metrics(
                    doc, {"metric": metric, "variant": variant, "value": value, "iter": 99, "timestamp": 0}
                )
            store.put("tasks", doc)
            task_ids.append(doc["id"])
        for index in range(models):
            stamp = tasks_api.now()
            doc = {"id": new_id(), "name": f"model-{index}", "uri": "", "comment": "", "framework": "PyTorch"}
            doc.update(design={}, labels={"cat": 0, "dog": 1}, metadata={}, tags=[], system_tags=[], ready=True)
            doc.update(task=task_ids[index], parent=None, project=project["id"], iteration=99, created=stamp)
            doc.update(user=ADMIN_ID, company="")
            models_api.save(ctx, doc)
    long_task = task_ids[0]
    others = task_ids[1:] or task_ids
    per_task = -(-max(scalar_events - LONG_SERIES, 0) // len(others))  # ceil: exactly scalar_events in all
    pending: list[dict] = []

    def flush():
        with store.transaction():
            store.add_events(pending)
        pending.clear()

    for iteration in range(min(LONG_SERIES, scalar_events)):
        pending.append(scalar(long_task, "loss", "train", iteration))
        if len(pending) >= BATCH:
            flush()
    written = min(LONG_SERIES, scalar_events)
    for task_id in others:
        for iteration in range(per_task):
            if written >= scalar_events:
                break
            pending.append(scalar(task_id, "loss", "train", iteration))
            written += 1
            if len(pending) >= BATCH:
                flush()
    flush()
    return {"project": project["id"], "task": task_ids[len(task_ids) // 2], "long_task": long_task, "events": written}


def scalar(task_id: str, metric: str, variant: str, iteration: int) -> dict:
    return {
        "task": task_id,
        "type": events.SCALAR,
        "metric": metric,
        "variant": variant,
        "iter": iteration,
        "value": 1.0 / (iteration + 1),
        "timestamp": 1_700_000_000_000 + iteration * 1000,
    }


def measure(client: TestClient, path: str, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        start = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="webui-bench-") as data_dir:
        server = LocalServer(data_dir)
        started = time.perf_counter()
        ids = seed(server, args.tasks, min(args.models, args.tasks), args.events)
        print(
            f"seeded {args.tasks} tasks, {args.models} models, {ids['events']} scalar events "
            f"in {time.perf_counter() - started:.1f} s"
        )
        client = TestClient(Starlette(routes=routes(server)))
        client.post("/login", data={"access_key": server.access_key, "secret_key": server.secret_key})
        pages = {
            "tasks table (50 rows, newest first)": (f"/projects/{ids['project']}/tasks", 100),
            "task page (execution tab)": (f"/projects/{ids['project']}/tasks/{ids['task']}/execution", 100),
            "task page (configuration tab)": (f"/projects/{ids['project']}/tasks/{ids['task']}/hyper-params", 100),
            "models table": ("/models", 100),
            f"scalars chart data, {LONG_SERIES:,}-point series": (f"/_ui/tasks/{ids['long_task']}/scalars", 300),
        }
        print(f"{'page':48} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  goal")
        for name, (path, goal) in pages.items():
            measure(client, path, 2)  # warm caches
            timings = measure(client, path, args.requests)
            verdict = "ok" if percentile(timings, 95) <= goal else "OVER"
            print(
                f"{name:48} {statistics.median(timings):8.1f} {percentile(timings, 95):8.1f} {max(timings):8.1f}"
                f"  p95 <= {goal} ms: {verdict}"
            )
        points = client.get(pages[f"scalars chart data, {LONG_SERIES:,}-point series"][0]).json()
        print(f"points returned for the long series: {len(points['loss']['train']['x'])}")
        client.close()
        server.close()


if __name__ == "__main__":
    main()
