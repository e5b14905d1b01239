"""`python -m app`: serve the production model with a Gradio UI, collect feedback, publish it as dataset versions.

ClearML connection settings come from the usual places (clearml.conf or CLEARML_* variables). Setting
APP_USERNAME and APP_PASSWORD in the environment puts the UI and its API behind a login. The UI is served at
/, the REST API at /api/v1/ (OpenAPI at /api/v1/openapi.json), both by one process on one port.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import torch
import uvicorn
from fastapi import FastAPI, Request

from app.feedback_store import FeedbackStore
from app.guard import Access, LabelPolicy, RateLimiter, client_id
from app.model_holder import ModelHolder
from app.publisher import AutoPublisher, Publisher
from app.quality import PredictionLog, QualityThreshold
from app.registry import RegistryWatcher
from app.rest import RestApi
from app.review import BY, ReviewQueue
from app.service import ClassifierService, Guards, Limits
from app.ui import ClassifierUI
from classifier.batching import DEFAULT_MAX_BATCH, InferenceWorkers
from loop.settings import DATASET_NAME, DATASET_PROJECT, PRODUCTION_TAG, PROJECT

log = logging.getLogger("app")
GIL_SWITCH_INTERVAL_S = 0.001


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description=__doc__.splitlines()[0],
        epilog="Set APP_USERNAME and APP_PASSWORD to require a login.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # Defaults are the names the training pipeline uses, so the app serves what it registers.
    parser.add_argument("--project", default=PROJECT, help="ClearML project that holds the models")
    parser.add_argument("--model-tag", default=PRODUCTION_TAG, help="serve the newest published model with this tag")
    parser.add_argument("--dataset-project", default=DATASET_PROJECT, help="ClearML project of the dataset")
    parser.add_argument("--dataset-name", default=DATASET_NAME, help="dataset that receives the feedback versions")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--concurrency", type=_at_least(1), default=8, help="requests handled at once")
    parser.add_argument(
        "--cpu-threads",
        type=_at_least(0),
        default=0,
        help="torch threads of a forward run for a lone image while no other runs (0: one per CPU core)",
    )
    parser.add_argument(
        "--cpu-workers",
        type=_at_least(0),
        default=os.cpu_count() or 1,
        help="one-thread workers that share the images when several wait (0: the lone-image worker takes them all)",
    )
    parser.add_argument(
        "--max-batch",
        type=_at_least(1),
        default=DEFAULT_MAX_BATCH,
        help="images one forward may take from those waiting (concurrent requests are batched, never delayed)",
    )
    parser.add_argument("--poll-interval", type=float, default=30.0, help="seconds between registry checks")
    parser.add_argument("--publish-every-n", type=int, default=20, help="publish at N unpublished items (0: off)")
    parser.add_argument(
        "--publish-every-minutes",
        type=float,
        default=60.0,
        help="publish when the oldest item waited this long (0: off)",
    )
    parser.add_argument("--data-dir", type=Path, default=Path(".data/app"), help="where feedback is stored")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="upload size limit")
    parser.add_argument("--output-uri", default=None, help="where dataset files go instead of the ClearML files server")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without a login (then anyone who reaches the app may publish and review)",
    )
    bounds = parser.add_argument_group("bounds against abuse")
    bounds.add_argument("--max-images", type=_at_least(1), default=16, help="images per API request")
    bounds.add_argument(
        "--max-request-megapixels", type=float, default=40.0, help="pixels of all images of one request together"
    )
    bounds.add_argument(
        "--decode-memory-mb", type=float, default=512.0, help="memory the image decodes in flight may take together"
    )
    bounds.add_argument(
        "--request-memory-mb", type=float, default=256.0, help="API request bodies held in memory at once, together"
    )
    bounds.add_argument(
        "--feedback-per-minute",
        type=_at_least(0),
        default=30,
        help="feedback items per client and minute (0: no limit)",
    )
    bounds.add_argument(
        "--max-new-labels", type=_at_least(0), default=10, help="new classes pending the next training run, in all"
    )
    bounds.add_argument(
        "--max-new-labels-per-client", type=_at_least(0), default=3, help="new classes pending, per client"
    )
    bounds.add_argument(
        "--allowed-labels", default="", help="comma-separated: accept only these labels as feedback (allow-list mode)"
    )
    review = parser.add_argument_group("review queue of uncertain uploads")
    review.add_argument(
        "--review-keep",
        action="store_true",
        help="keep the uploads the model is least sure about for review (only where users agreed to that)",
    )
    review.add_argument("--review-size", type=_at_least(1), default=200, help="uploads kept at most")
    review.add_argument("--review-max-age-days", type=float, default=7.0, help="uploads kept at most this long")
    review.add_argument(
        "--review-by", choices=BY, default="margin", help="uncertainty: lowest top confidence or margin to the next"
    )
    quality = parser.add_argument_group("live quality of the served model")
    quality.add_argument(
        "--quality-threshold", type=float, default=0.7, help="flag agreement with feedback below this rate"
    )
    quality.add_argument("--quality-window", type=_at_least(1), default=50, help="feedback items the flag looks at")
    quality.add_argument(
        "--quality-min-feedback", type=_at_least(1), default=10, help="feedback items needed before flagging"
    )
    quality.add_argument(
        "--report-interval", type=float, default=60.0, help="seconds between reports to the serving task (0: none)"
    )
    return parser.parse_args(argv)


def _at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its error message
    return parse


def build(args: argparse.Namespace):
    """The UI and the background workers for `args`; the caller starts the workers and launches the UI."""
    holder = ModelHolder(
        f"No model in project {args.project!r} is published with tag {args.model_tag!r} yet; "
        f"it is picked up within {args.poll_interval:g} s of being published."
    )
    store = FeedbackStore(args.data_dir)
    limits = Limits(
        max_bytes=int(args.max_upload_mb * 2**20),
        max_images=args.max_images,
        max_request_pixels=int(args.max_request_megapixels * 1e6),
        decode_budget_bytes=int(args.decode_memory_mb * 2**20),
    )
    allowed = frozenset(label.strip().lower() for label in args.allowed_labels.split(",") if label.strip())
    guards = Guards(
        feedback_rate=RateLimiter(args.feedback_per_minute, 60.0),
        labels=LabelPolicy(args.max_new_labels, args.max_new_labels_per_client, allowed or None),
    )
    prediction_log = PredictionLog(args.data_dir / "quality.sqlite3")
    review = None
    if args.review_keep:
        review = ReviewQueue(
            args.data_dir / "review", args.review_size, args.review_max_age_days * 86400, args.review_by
        )
    # Only the wide inference worker runs torch ops on several threads: a second OpenMP team (made, say, by the thread
    # that loads a model) made each forward on 2 cores nearly twice as slow (see classifier.batching).
    torch.set_num_threads(1)
    # The workers take the GIL back after every torch op; behind the event loop or a request thread running Python,
    # that waits up to the switch interval (5 ms by default). 1 ms: 72 against 67 images/s (8 clients, 2 cores).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    inference = InferenceWorkers(
        args.max_batch, torch_threads=args.cpu_threads or os.cpu_count(), single_thread_workers=args.cpu_workers
    )
    inference.start()
    service = ClassifierService(
        holder, store, limits, guards=guards, log=prediction_log, review=review, inference=inference
    )
    publisher = Publisher(store, args.dataset_project, args.dataset_name, output_uri=args.output_uri)
    auto_publisher = AutoPublisher(publisher, args.publish_every_n, args.publish_every_minutes)
    watcher = RegistryWatcher(holder, args.project, args.model_tag, args.poll_interval)
    ui = ClassifierUI(
        service,
        publisher,
        model_project=args.project,
        auto_publisher=auto_publisher,
        access=Access(login_from_env()),
        threshold=QualityThreshold(args.quality_threshold, args.quality_window, args.quality_min_feedback),
    )
    return ui, watcher, auto_publisher


def login_from_env() -> tuple[str, str] | None:
    username, password = os.environ.get("APP_USERNAME"), os.environ.get("APP_PASSWORD")
    return (username, password) if username and password else None


def check_binding(host: str, login: tuple[str, str] | None, insecure: bool) -> None:
    """Refuse to listen beyond this machine without a login, unless told `--insecure`."""
    if login is not None or insecure or is_loopback(host):
        return
    raise SystemExit(
        f"Refusing to serve on {host!r} without a login: anyone who can reach it could publish data. Set "
        "APP_USERNAME and APP_PASSWORD, bind 127.0.0.1, or pass --insecure."
    )


def is_loopback(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return bool(addresses) and all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    check_binding(args.host, login_from_env(), args.insecure)
    ui, watcher, auto_publisher = build(args)
    try:
        watcher.check_once()
    except Exception:  # the UI still starts and says no model is served; the watcher keeps trying
        log.exception("Could not load the serving model at start-up")
    watcher.start()
    auto_publisher.start()
    reporter = start_serving_task(ui, args) if args.report_interval > 0 else None
    try:
        serve(ui, args)
    finally:
        ui.service.inference.close()
        if reporter is not None:
            reporter.close()  # the serving task ends as stopped, with the last figures reported


def start_serving_task(ui: ClassifierUI, args: argparse.Namespace):
    from app.serving_report import ServingReporter

    try:
        reporter = ServingReporter(
            ui.service.log,
            ui.service.holder,
            args.project,
            f"serving {args.host}:{args.port}",
            ui.threshold,
            args.report_interval,
        )
    except Exception:  # the app serves without it; the figures stay in its statistics tab and REST API
        log.exception("Could not create the serving task; live quality is not reported to ClearML")
        return None
    log.info("Reporting live quality to serving task %s", reporter.id)
    reporter.start()
    return reporter


class AppServer:
    """A running app (uvicorn serving the REST API and the mounted Gradio UI) in a background thread."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, blocks: gr.Blocks):
        self.server, self.thread, self.blocks = server, thread, blocks

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join()
        self.blocks.close()


def create_app(ui: ClassifierUI, args: argparse.Namespace) -> tuple[FastAPI, gr.Blocks]:
    """One ASGI app: the REST API's routes first, the Gradio UI mounted at / behind them."""
    login = login_from_env()
    app = FastAPI(
        title="Pet classifier",
        version="1",
        description="Predictions, feedback and the served model; the Gradio UI is at /.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    RestApi(
        ui.service,
        login=login,
        concurrency=args.concurrency,
        client_of=_rest_client,
        body_budget_bytes=int(args.request_memory_mb * 2**20),
    ).install(app)
    blocks = ui.build()
    blocks.queue(default_concurrency_limit=args.concurrency)
    gr.mount_gradio_app(
        app,
        blocks,
        path="",
        auth=login,
        max_file_size=int(args.max_upload_mb * 2**20),
        show_error=True,
        # Gradio 6's run history is off, as there was none under Gradio 5: no copy of each call's inputs and
        # outputs in the browser, and no route that writes them to a Hugging Face bucket.
        run_history=False,
    )
    return app, blocks


def _rest_client(request: Request, username: str | None) -> str:
    return client_id(username, request.client.host if request.client else None)


def serve(ui, args: argparse.Namespace, prevent_thread_lock: bool = False, quiet: bool = False):
    """Serve `ui` and the REST API as configured by `args`. Blocks until the server stops, or, with
    `prevent_thread_lock=True`, returns (an `AppServer` to `close()`, its local url) once it accepts requests."""
    app, blocks = create_app(ui, args)
    # A stop waits at most 2 s for open connections: Gradio's clients keep a heartbeat stream open.
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning" if quiet else "info", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    url = f"http://{args.host}:{args.port}/"
    if not prevent_thread_lock:
        server.run()
        return blocks, url
    thread = threading.Thread(target=server.run, name="app-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the app did not start on {url}")
        time.sleep(0.05)
    return AppServer(server, thread, blocks), url


if __name__ == "__main__":
    main()
