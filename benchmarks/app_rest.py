"""The REST API's latency and throughput against the bare model, and the app's memory under hostile uploads.

    python -m benchmarks.app_rest                          # EfficientNet-Lite0, 224 px, CPU
    python -m benchmarks.app_rest --runs 100 --seconds 20
    python -m benchmarks.app_rest --client httpx           # clients on httpx instead of http.client

1. Latency, batch 1: `POST /api/v1/predict` (raw JPEG body, plain `http.client` on a kept-alive connection) vs. a
   bare forward in this process (decode + preprocess + forward, as `Predictor.predict` does it), same image, same
   run. Goal: REST / bare <= 1.2 (medians).
2. Throughput: 8 concurrent REST clients (threads of this process, each with its own connection) for `--seconds` vs.
   the bare model's best batched throughput, `predict_batch` on the decoded image (preprocessing included): one
   caller with torch's threads, batches of 1, 2, 4, 8, 16 (the goal's reference). Also measured: one caller per
   core with one torch thread each (as the app's workers run), batches of 1, 2, 4; the best of all arrangements
   is a stricter reference, printed beside. In `--rounds` alternating rounds of bare then REST; each ratio is the
   median of the rounds' ratios. Goal: >= 0.7. Also printed: the same clients against the app with `--max-batch 1`
   (every forward one image: what batching brings) and with `--cpu-workers 0` (every forward on all cores: what
   the one-thread workers bring).
3. Memory: 4 concurrent 6000x6000 float TIFFs (225 KiB each): the app process's peak RSS (psutil) over its
   RSS before, against the decode budget (`--decode-memory-mb`).

The app runs in a subprocess built as `python -m app` builds it (`benchmarks.common.start_app`), serving
the checkpoint directly; no ClearML server is involved. The clients share the machine's cores with the app.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import torch
from PIL import Image

from benchmarks.common import default_checkpoint, photo_like_jpeg, start_app, stop
from classifier.synthetic import hostile_float_tiff

WARMUP = 5


def bare_throughput(predictor, image: Image.Image, seconds: float) -> dict[tuple[int, int], float]:
    """Images/s of `predictor.predict_batch` by (batch, callers), each arrangement of the module's docstring;
    `seconds` in all."""
    cores = os.cpu_count() or 1
    arrangements = [(batch, 1) for batch in (1, 2, 4, 8, 16)] + [(batch, cores) for batch in (1, 2, 4)]
    window = seconds / len(arrangements)
    return {
        (batch, callers): _predict_for(predictor, [image] * batch, window)
        if callers == 1
        else _one_thread_callers(predictor, [image] * batch, window, callers)
        for batch, callers in arrangements
    }


def _arrangement(batch: int, callers: int) -> str:
    return f"b{batch}" if callers == 1 else f"b{batch} x{callers} one-thread callers"


def _one_thread_callers(predictor, images: list[Image.Image], seconds: float, callers: int) -> float:
    rates = [0.0] * callers

    def caller(index: int) -> None:
        torch.set_num_threads(1)  # this thread's own threads: it has run no torch op before
        rates[index] = _predict_for(predictor, images, seconds)

    threads = [threading.Thread(target=caller, args=(index,)) for index in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(rates)


def _predict_for(predictor, images: list[Image.Image], seconds: float) -> float:
    predictor.predict_batch(images)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        predictor.predict_batch(images)
        done += len(images)
    return done / (time.perf_counter() - started)


class HttpClient:
    """`POST /api/v1/predict` with `http.client` on one kept-alive connection (`kind="http.client"`), or httpx."""

    def __init__(self, url: str, kind: str):
        self.kind = kind
        parts = urlsplit(url)
        if kind == "httpx":
            self._httpx = httpx.Client(base_url=url, timeout=60)
        else:
            self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def predict(self, data: bytes) -> dict:
        if self.kind == "httpx":
            return self._httpx.post("api/v1/predict", content=data).raise_for_status().json()
        self._connection.request("POST", "/api/v1/predict", body=data, headers={"Content-Type": "image/jpeg"})
        response = self._connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST /api/v1/predict: {response.status} {body[:200]!r}")
        return json.loads(body)

    def close(self) -> None:
        (self._httpx if self.kind == "httpx" else self._connection).close()


def rest_throughput(url: str, data: bytes, clients: int, seconds: float, kind: str) -> float:
    done = [0] * clients
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        http_client = HttpClient(url, kind)
        try:
            while time.monotonic() < deadline:
                http_client.predict(data)
                done[index] += 1
        finally:
            http_client.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def hostile_memory(url: str, pid: int, uploads: int = 4) -> tuple[int, float, float, list[int]]:
    data = hostile_float_tiff()
    process = psutil.Process(pid)
    before = process.memory_info().rss
    peak, statuses = before, []
    running = True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    def upload() -> None:
        response = httpx.post(url + "api/v1/predict", content=data, timeout=120)
        statuses.append(response.status_code)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=upload) for _ in range(uploads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    running = False
    sampler.join()
    return len(data), before / 2**20, peak / 2**20, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="classifier checkpoint (default: EfficientNet-Lite0)")
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="of each throughput measurement")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (bare, then REST)")
    parser.add_argument("--decode-memory-mb", type=float, default=512.0)
    parser.add_argument("--client", choices=["http.client", "httpx"], default="http.client")
    args = parser.parse_args()

    from classifier.checkpoint import Checkpoint
    from classifier.images import decode_image
    from classifier.predict import Predictor

    print(f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="app-rest-") as tmp:
        work = Path(tmp)
        checkpoint = args.checkpoint or default_checkpoint(work / "model.pt")
        extra = ["--decode-memory-mb", str(args.decode_memory_mb)]
        extra += ["--max-upload-mb", "20"]
        process, url = start_app(checkpoint, work / "feedback", extra)
        try:
            data = photo_like_jpeg(0)
            predictor = Predictor(Checkpoint.load(checkpoint))
            client = HttpClient(url, args.client)
            variants = {
                "bare": lambda: predictor.predict(decode_image(data)),
                "rest": lambda: inside.append(client.predict(data)["predictions"][0]["latency_ms"]),
            }
            inside: list[float] = []
            samples: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(2):  # blocks of calls, alternating, so drifts in machine load hit both alike
                for name, call in variants.items():
                    time.sleep(0.5)
                    for index in range(WARMUP + args.runs // 2):
                        started = time.perf_counter()
                        call()
                        if index >= WARMUP:
                            samples[name].append((time.perf_counter() - started) * 1000)
            client.close()
            median = {name: statistics.median(values) for name, values in samples.items()}
            print(f"Latency, batch 1, {args.runs} runs each (500x375 JPEG, decode included in both; {args.client})")
            print(f"  bare model        median {median['bare']:6.1f} ms")
            print(f"  POST /api/v1/predict median {median['rest']:6.1f} ms")
            print(f"    inside the app   median {statistics.median(inside):6.1f} ms (decode + forward + logging)")
            print(f"  ratio REST / bare: {median['rest'] / median['bare']:.2f}  (goal <= 1.2)")

            image = decode_image(data)
            ratios: dict[str, list[float]] = {"one caller": [], "any arrangement": []}
            print(f"Throughput (img/s), {args.rounds} rounds of bare then REST (drifts in machine load hit both alike)")
            for round_number in range(1, args.rounds + 1):
                bare = bare_throughput(predictor, image, args.seconds)
                one_caller = max((arrangement for arrangement in bare if arrangement[1] == 1), key=bare.get)
                best = max(bare, key=bare.get)
                rest = rest_throughput(url, data, args.clients, args.seconds, args.client)
                ratios["one caller"].append(rest / bare[one_caller])
                ratios["any arrangement"].append(rest / bare[best])
                shown = ", ".join(f"{_arrangement(*arrangement)} {rate:.1f}" for arrangement, rate in bare.items())
                print(f"  round {round_number}: bare {shown}")
                print(
                    f"    REST, {args.clients} concurrent clients: {rest:.1f}; ratio to the best bare with one caller "
                    f"({_arrangement(*one_caller)}): {ratios['one caller'][-1]:.2f}, to the best of any "
                    f"({_arrangement(*best)}): {ratios['any arrangement'][-1]:.2f}"
                )
            median_ratio = {name: statistics.median(values) for name, values in ratios.items()}
            print(
                f"  ratio REST / best bare with one caller, median of the rounds: {median_ratio['one caller']:.2f}  "
                f"(goal >= 0.7); to the best of any arrangement: {median_ratio['any arrangement']:.2f}"
            )
            for option in (["--max-batch", "1"], ["--cpu-workers", "0"]):
                other, other_url = start_app(checkpoint, work / option[0].strip("-"), [*extra, *option])
                try:
                    rate = rest_throughput(other_url, data, args.clients, args.seconds, args.client)
                finally:
                    stop(other)
                print(f"  REST, {args.clients} concurrent clients, app {' '.join(option)}: {rate:.1f} img/s")

            size, before, peak, statuses = hostile_memory(url, process.pid)
            print(
                f"4 concurrent {size // 1024} KiB 6000x6000 float TIFFs: app RSS {before:.0f} MiB before, peak "
                f"{peak:.0f} MiB (+{peak - before:.0f} MiB; decode budget {args.decode_memory_mb:.0f} MiB), "
                f"statuses {sorted(statuses)}"
            )
        finally:
            stop(process)


if __name__ == "__main__":
    main()
