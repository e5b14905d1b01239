"""The app's settings: `AppConfig`, the one place for their defaults and bounds; `parse_args` only fills it.

Each field carries its command-line help, its option group and its bound; the parser is made from the fields, and
the same bound is checked when an `AppConfig` is built in code, so no value out of range reaches the app.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from app.review import BY
from classifier.batching import DEFAULT_MAX_BATCH
from loop.settings import DATASET_NAME, DATASET_PROJECT, PRODUCTION_TAG, PROJECT

LOGIN_HINT = "Set APP_USERNAME and APP_PASSWORD to require a login."
ABUSE = "bounds against abuse"
REVIEW = "review queue of uncertain uploads"
QUALITY = "live quality of the served model"


@dataclass(frozen=True)
class Bound:
    """Inclusive `minimum`/`maximum`, exclusive `above`; None: no bound on that side."""

    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None

    def problem(self, value: float) -> str | None:
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum:g}, got {value:g}"
        if self.above is not None and value <= self.above:
            return f"must be more than {self.above:g}, got {value:g}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum:g}, got {value:g}"
        return None


def _setting(default, help: str, *, group: str | None = None, bound: Bound | None = None, kind=None, choices=None):
    """A field of `AppConfig`: its default and the metadata the parser and the checks read."""
    metadata = {"help": help, "group": group, "bound": bound, "kind": kind or type(default), "choices": choices}
    return field(default=default, metadata=metadata)


AT_LEAST_0, AT_LEAST_1, POSITIVE = Bound(minimum=0), Bound(minimum=1), Bound(above=0)


@dataclass(frozen=True)
class AppConfig:
    # Defaults are the names the training pipeline uses, so the app serves what it registers.
    project: str = _setting(PROJECT, "ClearML project that holds the models")
    model_tag: str = _setting(PRODUCTION_TAG, "serve the newest published model with this tag")
    dataset_project: str = _setting(DATASET_PROJECT, "ClearML project of the dataset")
    dataset_name: str = _setting(DATASET_NAME, "dataset that receives the feedback versions")
    host: str = _setting("127.0.0.1", "address to listen on")
    port: int = _setting(7860, "port to listen on (0: any free port)", bound=Bound(minimum=0, maximum=65535))
    concurrency: int = _setting(8, "requests handled at once", bound=AT_LEAST_1)
    cpu_threads: int = _setting(
        0,
        "torch threads of a forward run for a lone image while no other runs (0: one per CPU core)",
        bound=AT_LEAST_0,
    )
    cpu_workers: int = _setting(
        os.cpu_count() or 1,
        "one-thread workers that share the images when several wait (0: the lone-image worker takes them all)",
        bound=AT_LEAST_0,
    )
    max_batch: int = _setting(
        DEFAULT_MAX_BATCH,
        "images one forward may take from those waiting (concurrent requests are batched, never delayed)",
        bound=AT_LEAST_1,
    )
    poll_interval: float = _setting(30.0, "seconds between registry checks", bound=POSITIVE)
    publish_every_n: int = _setting(20, "publish at N unpublished items (0: off)", bound=AT_LEAST_0)
    publish_every_minutes: float = _setting(
        60.0, "publish when the oldest item waited this long (0: off)", bound=AT_LEAST_0
    )
    data_dir: Path = _setting(Path(".data/app"), "where feedback is stored", kind=Path)
    max_upload_mb: float = _setting(10.0, "upload size limit", bound=POSITIVE)
    output_uri: str | None = _setting(None, "where dataset files go instead of the ClearML files server", kind=str)
    insecure: bool = _setting(
        False,
        "allow a non-loopback --host without a login (then anyone who reaches the app may publish and review)",
    )
    max_images: int = _setting(16, "images per API request", group=ABUSE, bound=AT_LEAST_1)
    max_request_megapixels: float = _setting(
        40.0, "pixels of all images of one request together", group=ABUSE, bound=POSITIVE
    )
    decode_memory_mb: float = _setting(
        512.0, "memory the image decodes in flight may take together", group=ABUSE, bound=POSITIVE
    )
    request_memory_mb: float = _setting(
        256.0, "API request bodies held in memory at once, together", group=ABUSE, bound=POSITIVE
    )
    feedback_per_minute: int = _setting(
        30, "feedback items per client and minute (0: no limit)", group=ABUSE, bound=AT_LEAST_0
    )
    max_new_labels: int = _setting(
        10, "new classes pending the next training run, in all", group=ABUSE, bound=AT_LEAST_0
    )
    max_new_labels_per_client: int = _setting(3, "new classes pending, per client", group=ABUSE, bound=AT_LEAST_0)
    allowed_labels: str = _setting(
        "", "comma-separated: accept only these labels as feedback (allow-list mode)", group=ABUSE
    )
    review_keep: bool = _setting(
        False,
        "keep the uploads the model is least sure about for review (only where users agreed to that)",
        group=REVIEW,
    )
    review_size: int = _setting(200, "uploads kept at most", group=REVIEW, bound=AT_LEAST_1)
    review_max_age_days: float = _setting(7.0, "uploads kept at most this long", group=REVIEW, bound=POSITIVE)
    review_by: str = _setting(
        "margin", "uncertainty: lowest top confidence or margin to the next", group=REVIEW, choices=BY
    )
    quality_threshold: float = _setting(
        0.7, "flag agreement with feedback below this rate", group=QUALITY, bound=Bound(minimum=0, maximum=1)
    )
    quality_window: int = _setting(50, "feedback items the flag looks at", group=QUALITY, bound=AT_LEAST_1)
    quality_min_feedback: int = _setting(10, "feedback items needed before flagging", group=QUALITY, bound=AT_LEAST_1)
    report_interval: float = _setting(
        60.0, "seconds between reports to the serving task (0: none)", group=QUALITY, bound=AT_LEAST_0
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        for setting in fields(self):
            value = getattr(self, setting.name)
            bound, choices = setting.metadata["bound"], setting.metadata["choices"]
            problem = bound.problem(value) if bound is not None else None
            if choices is not None and value not in choices:
                problem = f"must be one of {', '.join(choices)}, got {value!r}"
            if problem is not None:
                raise ValueError(f"{setting.name} {problem}")

    # The settings in the units the app's parts take.

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def allowed_label_set(self) -> frozenset[str]:
        return frozenset(label.strip().lower() for label in self.allowed_labels.split(",") if label.strip())


def parse_args(argv: list[str] | None = None) -> AppConfig:
    """The `AppConfig` of a command line; a value out of its bound exits with argparse's usage error."""
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Serve the production model with a Gradio UI, collect feedback, publish it as dataset versions.",
        epilog=LOGIN_HINT,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    groups = {None: parser}
    for setting in fields(AppConfig):
        meta = setting.metadata
        if meta["group"] not in groups:
            groups[meta["group"]] = parser.add_argument_group(meta["group"])
        group = groups[meta["group"]]
        flag = "--" + setting.name.replace("_", "-")
        default = setting.default if setting.default is not MISSING else None
        if meta["kind"] is bool:
            group.add_argument(flag, action="store_true", help=meta["help"])
        else:
            kind = _bounded(meta["kind"], meta["bound"]) if meta["bound"] else meta["kind"]
            group.add_argument(flag, type=kind, default=default, choices=meta["choices"], help=meta["help"])
    return AppConfig(**vars(parser.parse_args(argv)))


def _bounded(kind, bound: Bound):
    def parse(text: str):
        value = kind(text)
        problem = bound.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = "integer" if kind is int else "number"  # argparse names the type in its error message
    return parse
