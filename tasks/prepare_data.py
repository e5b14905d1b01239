"""Stage 1 of the retraining pipeline: validate a dataset version and split it by content hash.

Input: `dataset_id` (a ClearML dataset version; empty means the newest one). Output: the `split` artifact
(a `SplitManifest`: dataset id, classes, train and val files) plus a report of every rejected file. Stages run
without a `prepare_task_id` split the newest version themselves the same way (`split_for`).

    python -m tasks.prepare_data --dataset-id <id>
"""

from __future__ import annotations

import json

from clearml import Task

from loop import datasets, settings, stages
from loop.errors import StageError

DEFAULTS = {"dataset_id": "", "val_fraction": 0.2, "min_side": 32}
SPLIT_ARTIFACT = "split"


def run(task: Task, params: dict) -> dict:
    manifest = split_dataset(task, params)
    stages.record_resolved(task, params, "dataset_id", manifest.dataset_id)
    report = manifest.report
    rejected = len(report["rejected"]) + len(report["duplicates"])
    return {
        "dataset_id": manifest.dataset_id,
        "train": len(manifest.train),
        "val": len(manifest.val),
        "rejected": rejected,
    }


def split_dataset(task: Task, params: dict):
    """Validate and split `params["dataset_id"]` (empty: the newest version); report on `task` and store the
    `split` artifact there. Returns the `SplitManifest`."""
    from classifier.data import SplitManifest, scan_folder, split_by_hash, validate_files

    dataset_id = params["dataset_id"] or datasets.latest_version_id()
    if not dataset_id:
        raise StageError(f"no dataset id given and no version of {settings.DATASET_PROJECT}/{settings.DATASET_NAME}")
    root = datasets.local_copy(dataset_id)
    report = validate_files(root, scan_folder(root), min_side=params["min_side"])
    if len(report.class_counts) < 2:
        raise StageError(f"dataset {dataset_id} has {len(report.class_counts)} usable class(es); need at least 2")
    train, val = split_by_hash(report.valid, params["val_fraction"])
    manifest = SplitManifest(
        dataset_id=dataset_id, classes=sorted(report.class_counts), train=train, val=val, report=report.to_dict()
    )

    logger = task.get_logger()
    logger.report_table(
        "class balance",
        "images per class",
        iteration=0,
        table_plot=[["class", "images"]] + [[name, count] for name, count in sorted(report.class_counts.items())],
    )
    rejected = [[item.relpath, reason] for item, reason in report.rejected]
    rejected += [[dropped.relpath, f"duplicate of {kept.relpath}"] for dropped, kept in report.duplicates]
    logger.report_table(
        "rejected files", "file and reason", iteration=0, table_plot=[["file", "reason"]] + (rejected or [["-", "-"]])
    )
    for name, value in (
        ("valid", len(report.valid)),
        ("rejected", len(report.rejected)),
        ("duplicates", len(report.duplicates)),
        ("train", len(train)),
        ("val", len(val)),
    ):
        logger.report_single_value(name, value)
    task.upload_artifact(SPLIT_ARTIFACT, artifact_object=json.loads(manifest.to_json()), wait_on_upload=True)
    print(f"dataset {dataset_id}: {len(train)} train / {len(val)} val, classes {manifest.classes}")
    return manifest


def split_for(task: Task, prepare_task_id: str):
    """`(prepare task id, SplitManifest)` a later stage works on: the split of `prepare_task_id`, or, when it is
    empty (a template cloned with its defaults), the newest dataset version split on `task` as prepare_data
    splits it by default; `task` is then its own prepare task, and its parameter says so."""
    if prepare_task_id:
        return prepare_task_id, load_split(prepare_task_id)
    manifest = split_dataset(task, dict(DEFAULTS))
    stages.record_resolved(task, {}, "prepare_task_id", task.id)
    return task.id, manifest


def load_split(prepare_task_id: str):
    """The `SplitManifest` the prepare_data task `prepare_task_id` produced."""
    from classifier.data import SplitManifest

    return SplitManifest.from_json(json.dumps(stages.task_artifact(prepare_task_id, SPLIT_ARTIFACT)))


PARAMETER_HELP = {
    "dataset_id": "dataset version to split; empty: the newest version",
}
STAGE = stages.Stage(
    "prepare_data", Task.TaskTypes.data_processing, DEFAULTS, run, __doc__.split("\n\n")[0], PARAMETER_HELP
)


def main(argv: list[str] | None = None) -> None:
    stages.main(STAGE, argv)


if __name__ == "__main__":
    main()
