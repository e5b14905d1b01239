"""Stage 3: evaluate the candidate model and the production model on the same validation split.

Inputs: `prepare_task_id` (the split; empty: split the newest dataset version here, as prepare_data does),
`model_id` (the candidate; empty: the production model, evaluated alone) and `production_model_id` (empty: the
current production model; `none`: no comparison). The production model is scored on the classes it knows, and so is the
candidate for the comparison. Output: the `evaluation` artifact read by register_model, the confusion matrix and
the per-class table as plots.

    python -m tasks.evaluate --prepare-task-id <id> --model-id <id>
"""

from __future__ import annotations

# The ML core (torch, torchvision: ~3 s to import) is imported where it computes, so register_model, which reads
# this module's artifact name and re-evaluates only when production moved, starts without it.
from clearml import Task

from loop import datasets, registry, stages
from loop.errors import StageError
from tasks.prepare_data import load_split, split_for

DEFAULTS = {"prepare_task_id": "", "model_id": "", "production_model_id": ""}
EVALUATION_ARTIFACT = "evaluation"


def run(task: Task, params: dict) -> dict:
    from classifier.embeddings import DEFAULT_CACHE_DIR, EmbeddingCache
    from classifier.evaluate import evaluate_checkpoint

    prepare_task_id, manifest = split_for(task, params["prepare_task_id"])
    model_id = registry.resolve_model_id(params["model_id"])
    if not model_id:
        raise StageError("no model_id given and no production model to evaluate")
    stages.record_resolved(task, params, "model_id", model_id)
    root = datasets.local_copy(manifest.dataset_id)
    candidate = registry.load_checkpoint(model_id)
    production_id = registry.resolve_model_id(params["production_model_id"])
    if production_id == model_id:
        production_id = None
    stages.record_resolved(task, params, "production_model_id", production_id)

    # Head-mode models keep the frozen backbone whose embeddings the train step cached: no backbone pass needed.
    cache = EmbeddingCache(DEFAULT_CACHE_DIR)
    metrics = evaluate_checkpoint(candidate, root, manifest.val, cache=cache)
    report_metrics(task, "candidate", metrics)
    evaluation = {
        "model_id": model_id,
        "prepare_task_id": prepare_task_id,
        "dataset_id": manifest.dataset_id,
        "classes": list(candidate.classes),
        "candidate": metrics,
        **compare(candidate, production_id, root, manifest, cache),
    }
    if evaluation["shared"]:
        logger = task.get_logger()
        for side in ("candidate", "production"):
            for name in ("accuracy", "macro_f1"):
                logger.report_single_value(f"shared classes {side} {name}", evaluation["shared"][side][name])
    task.upload_artifact(EVALUATION_ARTIFACT, artifact_object=evaluation, wait_on_upload=True)
    print(f"candidate {model_id}: accuracy {metrics['accuracy']:.4f}, compared with {production_id}")
    return evaluation


def compare(candidate, production_id: str | None, root, manifest, cache) -> dict:
    """`production_model_id` and `shared` (both models' metrics on the classes they share; None: no production)."""
    if not production_id:
        return {"production_model_id": None, "shared": None}
    from classifier.evaluate import compare_on_shared_classes

    on_candidate, on_production, classes = compare_on_shared_classes(
        candidate, registry.load_checkpoint(production_id), root, manifest.val, cache=cache
    )
    return {
        "production_model_id": production_id,
        "shared": {"classes": classes, "candidate": on_candidate, "production": on_production},
    }


def evaluate_against(evaluation: dict, production_id: str | None) -> dict:
    """`compare` for an earlier evaluation's candidate and split, against another production model."""
    from classifier.embeddings import DEFAULT_CACHE_DIR, EmbeddingCache

    manifest = load_split(evaluation["prepare_task_id"])
    root = datasets.local_copy(manifest.dataset_id)
    candidate = registry.load_checkpoint(evaluation["model_id"])
    return compare(candidate, production_id, root, manifest, EmbeddingCache(DEFAULT_CACHE_DIR))


def report_metrics(task: Task, series: str, metrics: dict) -> None:
    logger = task.get_logger()
    classes = list(metrics["classes"])
    logger.report_confusion_matrix(
        "confusion matrix",
        series,
        matrix=metrics["confusion_matrix"],
        iteration=0,
        xaxis="predicted",
        yaxis="true",
        xlabels=classes,
        ylabels=classes,
        yaxis_reversed=True,
    )
    header = ["class", "precision", "recall", "f1", "support"]
    rows = [[name] + [metrics["per_class"][name][key] for key in header[1:]] for name in classes]
    logger.report_table("per-class metrics", series, iteration=0, table_plot=[header] + rows)
    for name in ("accuracy", "macro_f1", "log_loss"):
        logger.report_single_value(name, metrics[name])


PARAMETER_HELP = {
    "prepare_task_id": "prepare_data task whose validation split to score on; empty: split the newest version here",
    "model_id": "model to evaluate; empty: the production model",
    "production_model_id": "model to compare with; empty: the production model; none: no comparison",
}
STAGE = stages.Stage("evaluate", Task.TaskTypes.testing, DEFAULTS, run, __doc__.split("\n\n")[0], PARAMETER_HELP)


def main(argv: list[str] | None = None) -> None:
    stages.main(STAGE, argv)


if __name__ == "__main__":
    main()
