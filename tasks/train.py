"""Stage 2: train a classifier on the split of a prepare_data task, warm-started from the production model.

Inputs: `prepare_task_id` (its `split` artifact names the dataset version and the files; empty: split the newest
dataset version here, as prepare_data does) and `parent_model_id` (empty: the current production model;
`none`: start from the backbone alone). New classes in the dataset grow
the parent's head. `class_map` names the ImageNet classes of labels (`cat: 281-285; mylabel: none`, see
classifier/imagenet.py); empty: each label keeps its parent model's entry or gets the automatic one. The map the
model was trained with is stored back in the parameter. Output: an unpublished model (tag `candidate`) with the
checkpoint uploaded to the files server, labels = class indices, metadata = classes, the ImageNet class map,
dataset id, parent model id, validation metrics.

    python -m tasks.train --prepare-task-id <id> --mode head --epochs 3
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from clearml import OutputModel, Task

from classifier.imagenet import format_class_map
from classifier.train import TrainConfig, train
from loop import datasets, registry, settings, stages
from loop.errors import StageError
from tasks.prepare_data import split_for

# Fields of TrainConfig that are properties of the machine, not of the experiment.
LOCAL_FIELDS = ("embedding_cache_dir", "progress")
DEFAULTS = {
    "prepare_task_id": "",
    "parent_model_id": "",
    **{key: value for key, value in TrainConfig().to_dict().items() if key not in LOCAL_FIELDS},
}


def run(task: Task, params: dict) -> str:
    _, manifest = split_for(task, params["prepare_task_id"])
    root = datasets.local_copy(manifest.dataset_id)
    parent_id = registry.resolve_model_id(params["parent_model_id"])
    parent = registry.load_checkpoint(parent_id) if parent_id else None
    stages.record_resolved(task, params, "parent_model_id", parent_id)

    training = {key: value for key, value in params.items() if key not in ("prepare_task_id", "parent_model_id")}
    try:
        config = TrainConfig.from_dict(training | {"embedding_cache_dir": "", "progress": False})
    except ValueError as error:
        raise StageError(f"invalid training parameters: {error}") from error
    logger = task.get_logger()

    def on_epoch(epoch: int, metrics: dict) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                split, _, name = key.partition("_")
                title, series = (name, split) if split in ("train", "val") and name else (key, key)
                logger.report_scalar(title, series, float(value), iteration=epoch)

    result = train(
        config,
        root,
        manifest.train,
        manifest.val,
        manifest.classes,
        parent=parent,
        on_epoch=on_epoch,
        dataset_id=manifest.dataset_id,
        parent_model_id=parent_id,
    )
    checkpoint = result.checkpoint
    class_map = format_class_map(checkpoint.class_map)
    stages.record_resolved(task, params, "class_map", class_map)
    upload_started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model.pt"
        checkpoint.save(weights)
        model = OutputModel(
            task=task,
            name=f"classifier-{config.backbone}",
            framework="PyTorch",
            label_enumeration={name: index for index, name in enumerate(checkpoint.classes)},
            tags=[settings.CANDIDATE_TAG],
            comment=f"{len(checkpoint.classes)} classes, dataset {manifest.dataset_id}, parent {parent_id or 'none'}",
        )
        model.update_weights(weights_filename=str(weights), auto_delete_file=False, async_enable=False)
    # Steps cloned by a pipeline live in its hidden project; the model registry is the main project.
    model.project = Task.get_project_id(settings.PROJECT)
    timings = {key: result.metrics[key] for key in ("embedding_seconds", "train_seconds") if key in result.metrics}
    timings["upload_seconds"] = time.perf_counter() - upload_started
    for name, value in timings.items():
        logger.report_single_value(name, value)
    registry.set_metadata(
        model.id,
        {
            "classes": list(checkpoint.classes),
            "dataset_id": manifest.dataset_id,
            "parent_model_id": parent_id or "",
            "backbone": config.backbone,
            "class_map": class_map,
            "mode": config.mode,
            "val_metrics": _scalars(result.metrics),
            "timings": timings,
        },
    )
    print(f"model {model.id}: classes {list(checkpoint.classes)}, val {_scalars(result.metrics)}")
    return model.id


def _scalars(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if isinstance(value, (int, float))}


PARAMETER_HELP = {
    "prepare_task_id": "prepare_data task whose split to train on; empty: split the newest dataset version here",
    "parent_model_id": "model to start from; empty: the production model; none: the backbone alone",
    "class_map": "labels' ImageNet classes, e.g. 'cat: 281-285; dog: 151-268; mylabel: none'; empty: the parent's, "
    "else by name",
}
STAGE = stages.Stage("train", Task.TaskTypes.training, DEFAULTS, run, __doc__.split("\n\n")[0], PARAMETER_HELP)


def main(argv: list[str] | None = None) -> None:
    stages.main(STAGE, argv)


if __name__ == "__main__":
    main()
