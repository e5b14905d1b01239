"""What the benchmarks share, so their figures are made and read the same way: one percentile formula, the
photo-like test image and default checkpoint, and launching the app and the ClearML-compatible server.

The benchmarks are run as modules from the repository root (`python -m benchmarks.app_rest`), which puts the root
on `sys.path`: the project's packages and this module import as they do everywhere else.

    python -m benchmarks.common serve CHECKPOINT --data-dir DIR --port N [-- APP OPTIONS]   # what start_app runs
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from common.waiting import wait_until
from devstack.processes import free_port

START_TIMEOUT_S = 120.0
ROOT = Path(__file__).resolve().parent.parent


def extract_commit(commit: str, target: Path, *paths: str) -> Path:
    """The project at `commit` (only `paths`, if given) written under `target` with `git archive`, for a
    benchmark's "before" side."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, *paths], capture_output=True, check=True)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


def percentile(values: list[float], q: float) -> float:
    """The `q`-th percentile (0..100) by linear interpolation between the closest ranks (numpy's default and
    `statistics.quantiles(method="inclusive")`): the one formula every benchmark reports."""
    return float(np.percentile(values, q))


def latency_summary(samples_ms: list[float]) -> str:
    return f"median {statistics.median(samples_ms):7.1f} ms   p90 {percentile(samples_ms, 90):7.1f} ms"


def photo_like_jpeg(seed: int, size: tuple[int, int] = (500, 375)) -> bytes:
    """A PetImages-sized JPEG with smooth structure and noise (compresses like a photo, unlike pure noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([np.sin(x / rng.uniform(8, 40) + c) * np.cos(y / rng.uniform(8, 40)) for c in range(3)], -1)
    pixels = np.clip((base * 80 + 128) + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def default_checkpoint(path: Path) -> Path:
    """EfficientNet-Lite0 with its ImageNet weights and a 3-class head, at 224 px, saved at `path`."""
    from classifier.checkpoint import Checkpoint
    from classifier.model import build_model

    model = build_model("efficientnet_lite0", 3, pretrained=True)
    return Checkpoint.from_model(model, ["cat", "dog", "rabbit"], 224).save(path)


# -- the app ----------------------------------------------------------------------------------------------------


def serve_checkpoint(checkpoint: Path, data_dir: Path, port: int, options: list[str]) -> None:
    """The app as `python -m app` builds it (`create_app`), serving `checkpoint` instead of following the registry
    on `port`, until this process is stopped."""
    from app.application import create_app
    from app.config import parse_args
    from app.model_holder import ServedModel
    from classifier.checkpoint import Checkpoint
    from classifier.predict import Predictor

    config = parse_args(["--data-dir", str(data_dir), "--port", str(port), "--report-interval", "0", *options])
    loaded = Checkpoint.load(checkpoint)
    model = ServedModel("benchmark", checkpoint.name, Predictor(loaded), loaded)
    with create_app(config, None, model=model) as app:
        app.serve(quiet=True)


def start_app(checkpoint: Path, data_dir: Path, options: list[str] = ()) -> tuple[subprocess.Popen, str]:
    """`serve_checkpoint` in a subprocess (the app in its own interpreter, as in production) on a free port; returns
    it and the app's URL once it serves the model."""
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.common", "serve", str(checkpoint), "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--", *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/"

    def serving() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with code {process.returncode} before serving")
        try:
            return bool(httpx.get(url + "healthz", timeout=5).json()["model_id"])
        except httpx.HTTPError:
            return False

    try:
        wait_until(serving, START_TIMEOUT_S, "the app to serve the model", interval=0.2)
    except BaseException:
        stop(process)
        raise
    return process, url


def stop(process: subprocess.Popen) -> None:
    """Kill `process` (SIGKILL, as a crash: what the app acknowledged must be on disk already) and reap it."""
    process.kill()
    process.wait()


# -- the server -------------------------------------------------------------------------------------------------


class ServerProcess:
    """`python -m localserver serve` with the code in `code_dir` (another commit's, say) on `data_dir`: its API URL
    and a token of the credentials it made."""

    def __init__(self, code_dir: Path, data_dir: Path):
        ready = data_dir / "ready.json"
        env = {**os.environ, "PYTHONPATH": str(code_dir)}
        for key in ("CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY"):
            env.pop(key, None)
        command = [sys.executable, "-m", "localserver", "serve", "--data-dir", str(data_dir), "--port", "0"]
        with open(data_dir / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [*command, "--ready-file", str(ready)], env=env, cwd=code_dir, stdout=log, stderr=subprocess.STDOUT
            )

        def started() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"server in {code_dir} exited; see {data_dir / 'server.log'}")
            return ready.exists()

        wait_until(started, 60, f"the server in {code_dir} to start", interval=0.05)
        info = json.loads(ready.read_text())
        self.port = info["port"]
        self.api_url = f"http://127.0.0.1:{self.port}"
        response = httpx.get(f"{self.api_url}/auth.login", auth=(info["access_key"], info["secret_key"]), timeout=30)
        self.token = response.json()["data"]["token"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.common")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a checkpoint with the app (what start_app runs)")
    serve.add_argument("checkpoint", type=Path)
    serve.add_argument("--data-dir", type=Path, required=True)
    serve.add_argument("--port", type=int, required=True)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)  # the app's own options follow "--"
    args = parser.parse_args(argv[:split])
    serve_checkpoint(args.checkpoint, args.data_dir, args.port, argv[split + 1 :])


if __name__ == "__main__":
    main()
