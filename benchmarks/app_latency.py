"""App latency and feedback durability, measured on a running app.

    python -m benchmarks.app_latency                       # EfficientNet-Lite0, 224 px, CPU
    python -m benchmarks.app_latency --checkpoint model.pt --runs 100

1. Predict latency, batch 1, on one image: a bare model forward in this process (preprocessing + forward, as
   `Predictor.predict` does it) vs. the same image through the running app's HTTP API (`gradio_client`,
   `/predict`). Goal: app / bare <= 1.2. Also printed: the forward alone on a ready tensor, the same call made
   with Gradio's queue protocol read as events arrive (`QueueProtocolClient`), the time the app itself reports
   (decode + predict), and the gradio_client round trip of an endpoint that does no work (`/served_model`).
   That last one is a floor under every gradio_client call: its result loop sleeps 50 ms whenever no message
   is waiting, so no app can bring a ~25 ms model to 1.2 through gradio_client.
2. 50 feedback submissions (distinct images) from 8 concurrent `gradio_client` clients; then the app is
   SIGKILLed, and the feedback store on disk must hold every acknowledged item with its exact bytes and label.

The app runs in a subprocess built exactly as `python -m app` builds it, serving the checkpoint directly (no
ClearML server is involved in either measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from benchmarks.common import default_checkpoint, latency_summary, photo_like_jpeg, start_app, stop

WARMUP = 5


class QueueProtocolClient:
    """Gradio's HTTP queue protocol (upload, `queue/join`, then the `queue/data` event stream), as gradio_client
    speaks it, but reading each event as it arrives: gradio_client's result loop sleeps 50 ms whenever no event
    is waiting (`gradio_client.utils.stream_sse_v1plus`), so every call it makes takes at least one such sleep.
    This client shows what the app and Gradio's server take without that sleep."""

    def __init__(self, url: str):
        import httpx

        config = httpx.get(url + "config").json()
        self.http = httpx.Client(base_url=url.rstrip("/") + config.get("api_prefix", "") + "/", timeout=30)
        self.fn_index = {dep.get("api_name"): dep["id"] for dep in config["dependencies"]}
        self.session_hash = os.urandom(8).hex()

    def predict(self, path: Path, api_name: str) -> list:
        with path.open("rb") as file:
            uploaded = self.http.post("upload", files=[("files", (path.name, file))]).raise_for_status().json()[0]
        payload = {
            "data": [{"path": uploaded, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}],
            "fn_index": self.fn_index[api_name],
            "session_hash": self.session_hash,
        }
        event_id = self.http.post("queue/join", json=payload).raise_for_status().json()["event_id"]
        with self.http.stream("GET", "queue/data", params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") == event_id and message["msg"] == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError(f"{api_name} failed: {message}")
                    return message["output"]["data"]
        raise RuntimeError(f"the event stream ended before {api_name} completed")


def latency(args, checkpoint: Path, url: str, work: Path) -> None:
    from gradio_client import Client, handle_file

    from classifier.checkpoint import Checkpoint
    from classifier.images import decode_image
    from classifier.predict import Predictor

    data = photo_like_jpeg(0)
    image_path = work / "photo.jpg"
    image_path.write_bytes(data)
    predictor = Predictor(Checkpoint.load(checkpoint))
    image = decode_image(data)
    batch = predictor.prepare(image).unsqueeze(0)
    client = Client(url, verbose=False)
    direct = QueueProtocolClient(url)

    def forward_only():
        predictor.forward(batch)

    # Each variant returns the latency the app reports (decode + predict inside the app) or None.
    variants = {
        "bare": lambda: predictor.predict(image),
        "forward": forward_only,
        "app": lambda: client.predict(handle_file(str(image_path)), api_name="/predict")[1],
        "direct": lambda: direct.predict(image_path, "predict")[1],
        "no_op": lambda: client.predict(api_name="/served_model") and None,
    }
    # Blocks of calls per variant, alternating twice (A B C ... A B C ...) so slow drifts in machine load hit
    # every variant alike. Not call-by-call: the OpenMP threads of one process keep spinning for a moment after
    # a forward and would slow down the other process's next call.
    samples: dict[str, list[float]] = {name: [] for name in variants}
    reported: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(2):
        for name, function in variants.items():
            time.sleep(0.5)
            for call in range(WARMUP + args.runs // 2):
                started = time.perf_counter()
                inside_ms = function()
                if call >= WARMUP:
                    samples[name].append((time.perf_counter() - started) * 1000.0)
                    if isinstance(inside_ms, float):
                        reported[name].append(inside_ms)
    median = {name: statistics.median(values) for name, values in samples.items()}
    inside = reported["app"] + reported["direct"]

    print(f"Predict latency, batch 1, {args.runs} runs each, {image.size[0]}x{image.size[1]} JPEG")
    print(f"  bare model (preprocess + forward)       {latency_summary(samples['bare'])}")
    print(f"  forward only (tensor ready)             {latency_summary(samples['forward'])}")
    print(f"  app via gradio_client /predict          {latency_summary(samples['app'])}")
    print(f"  app via the same protocol, no sleeps    {latency_summary(samples['direct'])}")
    print(f"    inside the app (decode + predict)     {latency_summary(inside)}")
    print(f"  gradio_client round trip, no work       {latency_summary(samples['no_op'])}")
    print(f"  ratio app via gradio_client / bare:     {median['app'] / median['bare']:.2f}  (goal <= 1.2)")
    print(f"  ratio app via the protocol / bare:      {median['direct'] / median['bare']:.2f}")
    print(f"  ratio inside the app / bare:            {statistics.median(inside) / median['bare']:.2f}")


def submit_feedback(args, url: str, work: Path) -> tuple[list[tuple[Path, str]], list[str], float]:
    """Send the submissions from `args.clients` concurrent clients; returns (acknowledged, errors, seconds)."""
    from gradio_client import Client, handle_file

    labels = ["cat", "dog", "rabbit"]
    submissions = []
    for index in range(args.submissions):
        path = work / f"feedback_{index}.jpg"
        path.write_bytes(photo_like_jpeg(1000 + index, size=(320, 240)))
        submissions.append((path, labels[index % len(labels)]))
    acknowledged, errors = [], []
    lock = threading.Lock()

    def client_loop(worker: int):
        client = Client(url, verbose=False)
        for path, label in submissions[worker :: args.clients]:
            try:
                client.predict(handle_file(str(path)), label, api_name="/feedback")
                with lock:
                    acknowledged.append((path, label))
            except Exception as exc:
                with lock:
                    errors.append(f"{path.name}: {exc}")

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(worker,)) for worker in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acknowledged, errors, time.perf_counter() - started


def report_feedback(args, acknowledged, errors, seconds: float, data_dir: Path) -> None:
    """Check the store the killed app left behind against what it acknowledged."""
    from app.feedback_store import FeedbackStore
    from classifier.images import sha256_bytes

    store = FeedbackStore(data_dir)
    stored = {item.sha256: item for item in store.items()}
    lost = []
    for path, label in acknowledged:
        data = path.read_bytes()
        item = stored.get(sha256_bytes(data))
        if item is None or item.label != label or store.image_path(item).read_bytes() != data:
            lost.append(path.name)
    print(
        f"Feedback: {args.submissions} submissions from {args.clients} concurrent clients in {seconds:.1f} s "
        f"({args.submissions / seconds:.1f}/s); app then SIGKILLed: {len(acknowledged)} acknowledged, "
        f"{len(stored)} stored, {len(lost)} lost, {len(errors)} errors"
    )
    for error in errors[:5]:
        print(f"  error: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="classifier checkpoint (default: EfficientNet-Lite0)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--submissions", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    print(f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="app-latency-") as tmp:
        work = Path(tmp)
        checkpoint = args.checkpoint or default_checkpoint(work / "model.pt")
        data_dir = work / "feedback"
        process, url = start_app(checkpoint, data_dir)
        try:
            latency(args, checkpoint, url, work)
            acknowledged, errors, seconds = submit_feedback(args, url, work)
        finally:
            stop(process)  # SIGKILL, as a crash: acknowledged feedback must be on disk already
        report_feedback(args, acknowledged, errors, seconds, data_dir)


if __name__ == "__main__":
    main()
