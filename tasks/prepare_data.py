"""Stage 1 of the retraining pipeline: validate a dataset version and split it by content hash.

Input: `dataset_id` (a ClearML dataset version; empty means the newest one). Output: the `split` artifact
(a `SplitManifest`: dataset id, classes, train and val files) plus a report of every rejected file.

    python -m tasks.prepare_data --dataset-id <id>
"""

from __future__ import annotations

import json

from clearml import Task

from tasks import common

DEFAULTS = {"dataset_id": "", "val_fraction": 0.2, "min_side": 32}


def run(task: Task, params: dict) -> dict:
    from classifier.data import SplitManifest, scan_folder, split_by_hash, validate_files

    dataset_id = params["dataset_id"] or common.latest_dataset_id()
    if not dataset_id:
        raise SystemExit(f"no dataset id given and no version of {common.DATASET_PROJECT}/{common.DATASET_NAME}")
    if dataset_id != params["dataset_id"]:
        task.set_parameter(f"{common.PARAM_SECTION}/dataset_id", dataset_id)
    root = common.fetch_dataset(dataset_id)
    report = validate_files(root, scan_folder(root), min_side=params["min_side"])
    if len(report.class_counts) < 2:
        raise SystemExit(f"dataset {dataset_id} has {len(report.class_counts)} usable class(es); need at least 2")
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
    task.upload_artifact(common.SPLIT_ARTIFACT, artifact_object=json.loads(manifest.to_json()), wait_on_upload=True)
    print(f"dataset {dataset_id}: {len(train)} train / {len(val)} val, classes {manifest.classes}")
    return {"dataset_id": dataset_id, "train": len(train), "val": len(val), "rejected": len(rejected)}


def main(argv: list[str] | None = None) -> None:
    params = common.parse_cli(DEFAULTS, __doc__.split("\n\n")[0], argv)
    task, params = common.init_stage_task("prepare_data", Task.TaskTypes.data_processing, params)
    run(task, params)
    task.close()


if __name__ == "__main__":
    main()
