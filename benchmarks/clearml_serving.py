"""Serving the production model through clearml-serving: batch-1 latency against the app's REST API and a bare
forward, and what a promotion does to the requests in flight.

    python -m benchmarks.clearml_serving [--runs 100]

Everything runs for real on this machine: the embedded server (a subprocess), clearml-serving's inference service
(`devstack.clearml_serving`, a plain uvicorn process, `custom` engine) set up by `loop.clearml_serving`, and the
app (`benchmarks.common.start_app`) serving the same checkpoint: EfficientNet-Lite0 at 224 px, CPU.

1. Latency, batch 1: the same photo-like JPEG posted as the raw body to `/serve/pets` and to `/api/v1/predict`
   (each on one kept-alive connection), and a bare forward in this process (decode + preprocess + forward), in
   alternating rounds. Goal: clearml-serving / REST <= 1.5 (medians).
2. Swap: a client posts in a loop while a second model is uploaded and promoted; printed: seconds from the
   promotion to the first answer by the new model, and the worst request latency from the upload until 3 s
   after that answer.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

from PIL import Image

from benchmarks.common import default_checkpoint, latency_summary, photo_like_jpeg, start_app, stop
from common.waiting import wait_until
from devstack.clearml_serving import start_inference, wait_until_serving
from devstack.processes import free_port
from localserver import start_server_process

PROJECT = "benchmark-serving"


def post(connection: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes]:
    connection.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
    response = connection.getresponse()
    return response.status, response.read()


def timed_ms(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def register(checkpoint: Path, name: str) -> str:
    """Upload and register ``checkpoint`` in PROJECT and promote it, as the pipeline's last step would."""
    from clearml import InputModel, StorageManager

    from loop import registry

    url = StorageManager.upload_file(str(checkpoint), f"{os.environ['CLEARML_FILES_HOST']}/{PROJECT}/{name}.pt")
    model_id = InputModel.import_model(weights_url=url, name=name, project=PROJECT, create_as_published=False).id
    registry.promote(model_id, lambda production: SimpleNamespace(promote=True, reason="benchmark"), project=PROJECT)
    return model_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="requests of each kind")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    server = start_server_process(work / "server")
    env = server.client_env()
    os.environ.update(env, CLASSIFIER_PROJECT=PROJECT)
    from classifier.checkpoint import Checkpoint
    from classifier.predict import Predictor
    from loop import clearml_serving

    checkpoint = default_checkpoint(work / "model.pt")
    first = register(checkpoint, "first")
    service = clearml_serving.set_up(project=PROJECT)
    inference = start_inference(env, service.id, free_port(), work / "serving", project=PROJECT)
    app, app_url = start_app(checkpoint, work / "app")
    try:
        image = photo_like_jpeg(0)
        wait_until_serving(inference, image)
        predictor = Predictor(Checkpoint.load(checkpoint))
        serving = http.client.HTTPConnection("127.0.0.1", inference.port, timeout=60)
        rest = http.client.HTTPConnection(*urlsplit(app_url).netloc.split(":"), timeout=60)
        samples: dict[str, list[float]] = {"clearml-serving": [], "app REST": [], "bare forward": []}
        calls = {
            "clearml-serving": lambda: post(serving, "/serve/pets", image),
            "app REST": lambda: post(rest, "/api/v1/predict", image),
            "bare forward": lambda: predictor.predict(Image.open(io.BytesIO(image)).convert("RGB")),
        }
        for _ in range(5):  # warm-up
            for call in calls.values():
                call()
        for _ in range(args.runs):
            for name, call in calls.items():
                samples[name].append(timed_ms(call))
        print(f"batch-1 latency, {args.runs} requests each ({os.cpu_count()} CPU cores):")
        for name, values in samples.items():
            print(f"  {name:16} {latency_summary(values)}")
        ratio = statistics.median(samples["clearml-serving"]) / statistics.median(samples["app REST"])
        print(f"  clearml-serving / app REST (medians): {ratio:.2f} (goal <= 1.5)")

        answers: list[tuple[float, int, float, bytes]] = []
        stopped = threading.Event()

        def client() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", inference.port, timeout=60)
            while not stopped.is_set():
                sent = time.monotonic()
                status, body = post(connection, "/serve/pets", image)
                answers.append((sent, status, time.monotonic() - sent, body))

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        time.sleep(2)
        registering = time.monotonic()
        second = register(checkpoint, "second")  # upload, register, promote
        promoted = time.monotonic()
        new = wait_until(
            lambda: next((sent for sent, _, _, body in answers if sent >= promoted and second.encode() in body), None),
            120,
            "an answer by the new model",
            interval=0.1,
        )
        time.sleep(3)
        stopped.set()
        thread.join(60)
        window = [(status, latency) for sent, status, latency, _ in answers if registering <= sent <= new + 3]
        failed = sum(status != 200 for status, _ in window)
        worst = max(latency for _, latency in window)
        print(f"swap: {first[:8]} -> {second[:8]}: the new model answered {new - promoted:.1f} s after the promotion")
        print(f"  {len(window)} requests from the upload to 3 s after: {failed} failed, worst {worst * 1000:.0f} ms")
    finally:
        stop(app)
        inference.stop()
        server.stop()


if __name__ == "__main__":
    main()
