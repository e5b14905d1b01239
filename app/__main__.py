"""`python -m app`: serve the production model with a Gradio UI, collect feedback, publish it as dataset versions.

ClearML connection settings come from the usual places (clearml.conf or CLEARML_* variables). Setting
APP_USERNAME and APP_PASSWORD in the environment puts the UI and its API behind a login.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch

from app.feedback_store import FeedbackStore
from app.model_holder import ModelHolder
from app.publisher import AutoPublisher, Publisher
from app.registry import RegistryWatcher
from app.service import ClassifierService, Limits
from app.ui import ClassifierUI
from classifier.runtime import serving_threads
from loop.settings import DATASET_NAME, DATASET_PROJECT, PRODUCTION_TAG, PROJECT

log = logging.getLogger("app")


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
        "--cpu-threads", type=_at_least(0), default=0, help="torch threads per CPU forward (0: CPU cores / concurrency)"
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
    service = ClassifierService(holder, store, Limits(max_bytes=int(args.max_upload_mb * 2**20)))
    publisher = Publisher(store, args.dataset_project, args.dataset_name, output_uri=args.output_uri)
    auto_publisher = AutoPublisher(publisher, args.publish_every_n, args.publish_every_minutes)
    watcher = RegistryWatcher(holder, args.project, args.model_tag, args.poll_interval)
    ui = ClassifierUI(service, publisher, model_project=args.project, auto_publisher=auto_publisher)
    return ui, watcher, auto_publisher


def login_from_env() -> tuple[str, str] | None:
    username, password = os.environ.get("APP_USERNAME"), os.environ.get("APP_PASSWORD")
    return (username, password) if username and password else None


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    ui, watcher, auto_publisher = build(args)
    try:
        watcher.check_once()
    except Exception:  # the UI still starts and says no model is served; the watcher keeps trying
        log.exception("Could not load the serving model at start-up")
    watcher.start()
    auto_publisher.start()
    serve(ui, args)


def serve(ui, args: argparse.Namespace, **launch_options):
    """Launch `ui` as configured by `args`; returns (blocks, local url), and blocks until the server stops
    unless `prevent_thread_lock=True` is passed."""
    torch.set_num_threads(args.cpu_threads or serving_threads(args.concurrency))
    demo = ui.build()
    demo.queue(default_concurrency_limit=args.concurrency)
    _, url, _ = demo.launch(
        server_name=args.host,
        server_port=args.port,
        auth=login_from_env(),
        max_file_size=int(args.max_upload_mb * 2**20),
        show_error=True,
        # Gradio 6's run history is off, as there was none under Gradio 5: no copy of each call's inputs and
        # outputs in the browser, and no route that writes them to a Hugging Face bucket.
        run_history=False,
        **launch_options,
    )
    return demo, url


if __name__ == "__main__":
    main()
