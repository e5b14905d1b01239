"""Stage 3: evaluate the candidate model and the production model on the same validation split.

Inputs: `prepare_task_id` (the split), `model_id` (the candidate) and `production_model_id` (empty: the current
production model; `none`: no comparison). The production model is scored on the classes it knows, and so is the
candidate for the comparison. Output: the `evaluation` artifact read by register_model, the confusion matrix and
the per-class table as plots.

    python -m tasks.evaluate --prepare-task-id <id> --model-id <id>
"""

from __future__ import annotations

import numpy as np
import torch
from clearml import Task

from classifier.embeddings import DEFAULT_CACHE_DIR, EmbeddingCache, compute_embeddings
from classifier.metrics import classification_metrics
from classifier.runtime import resolve_device
from tasks import common

DEFAULTS = {"prepare_task_id": "", "model_id": "", "production_model_id": ""}


def run(task: Task, params: dict) -> dict:
    common.require(params, "prepare_task_id", "model_id")
    manifest = common.load_split(params["prepare_task_id"])
    root = common.fetch_dataset(manifest.dataset_id)
    candidate = common.load_checkpoint(params["model_id"])
    production_id = common.resolve_model_id(params["production_model_id"])
    if production_id == params["model_id"]:
        production_id = None
    if production_id and production_id != params["production_model_id"]:
        task.set_parameter(f"{common.PARAM_SECTION}/production_model_id", production_id)

    cache = EmbeddingCache(DEFAULT_CACHE_DIR)
    metrics = score(candidate, root, manifest.val, cache)
    report_metrics(task, "candidate", metrics)
    evaluation = {
        "model_id": params["model_id"],
        "dataset_id": manifest.dataset_id,
        "classes": list(candidate.classes),
        "candidate": metrics,
        "production_model_id": production_id,
        "shared": None,
    }
    if production_id:
        production = common.load_checkpoint(production_id)
        classes = [name for name in candidate.classes if name in set(production.classes)]
        if not classes:
            raise SystemExit(f"candidate {candidate.classes} and production {production.classes} share no class")
        shared_files = [f for f in manifest.val if f.label in set(classes)]
        on_candidate, on_production = (score(ckpt, root, shared_files, cache) for ckpt in (candidate, production))
        for metrics_on_shared in (on_candidate, on_production):
            metrics_on_shared["shared_classes"] = classes
        evaluation["shared"] = {"classes": classes, "candidate": on_candidate, "production": on_production}
        logger = task.get_logger()
        for side, values in (("candidate", on_candidate), ("production", on_production)):
            for name in ("accuracy", "macro_f1"):
                logger.report_single_value(f"shared classes {side} {name}", values[name])
    task.upload_artifact(common.EVALUATION_ARTIFACT, artifact_object=evaluation, wait_on_upload=True)
    print(f"candidate {params['model_id']}: accuracy {metrics['accuracy']:.4f}, compared with {production_id}")
    return evaluation


def score(checkpoint, root, files, cache: EmbeddingCache) -> dict:
    """Metrics of `checkpoint` on the files whose label it knows (argmax over all its classes).

    Same figures as `classifier.evaluate.evaluate_checkpoint`, but the backbone output comes from the embedding
    cache: a model trained in head mode keeps the frozen backbone whose embeddings the train step cached, so
    scoring it needs no forward pass through the backbone (the bulk of the time on a CPU).
    """
    known = [f for f in files if f.label in set(checkpoint.classes)]
    if not known:
        raise SystemExit(f"no validation file has a label the model knows ({checkpoint.classes})")
    device = resolve_device("auto")
    model = checkpoint.build_model().to(device)
    embeddings, _ = compute_embeddings(model, root, known, checkpoint.input_size, cache, device, progress=False)
    with torch.inference_mode():
        logits = model.head(torch.from_numpy(embeddings).to(device))
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy().astype(np.float64)
    index = {name: i for i, name in enumerate(checkpoint.classes)}
    metrics = classification_metrics([index[f.label] for f in known], probs, checkpoint.classes)
    metrics["num_unknown_label"] = len(files) - len(known)
    return metrics


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


def main(argv: list[str] | None = None) -> None:
    params = common.parse_cli(DEFAULTS, __doc__.split("\n\n")[0], argv)
    task, params = common.init_stage_task("evaluate", Task.TaskTypes.testing, params)
    run(task, params)
    task.close()


if __name__ == "__main__":
    main()
