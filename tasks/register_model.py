"""Stage 4: the promotion gate. Publish the candidate and move the `production` tag to it, or refuse.

Input: `evaluate_task_id` (its `evaluation` artifact) and `tolerance`. The candidate is promoted when, on the
classes both models know, it is not worse than the production model by more than `tolerance` (or when there
is no production model yet). A refused candidate stays unpublished, with the reason in its comment.

    python -m tasks.register_model --evaluate-task-id <id> --tolerance 0.02
"""

from __future__ import annotations

from clearml import Model, Task

from tasks import common

DEFAULTS = {"evaluate_task_id": "", "tolerance": 0.02}


def run(task: Task, params: dict) -> dict:
    from classifier.gate import decide_promotion

    common.require(params, "evaluate_task_id")
    evaluation = common.task_artifact(params["evaluate_task_id"], common.EVALUATION_ARTIFACT)
    shared = evaluation.get("shared")
    candidate_metrics = shared["candidate"] if shared else evaluation["candidate"]
    production_metrics = shared["production"] if shared else None
    decision = decide_promotion(candidate_metrics, production_metrics, params["tolerance"])

    model = Model(model_id=evaluation["model_id"])
    verdict = "promoted" if decision.promote else "not promoted"
    model.comment = f"{model.comment or ''}\n{verdict}: {decision.reason}".strip()
    common.set_model_metadata(
        model,
        {
            "metrics": {k: v for k, v in evaluation["candidate"].items() if isinstance(v, (int, float))},
            "compared_with": evaluation.get("production_model_id") or "",
            "promotion": f"{verdict}: {decision.reason}",
        },
    )
    previous: list[str] = []
    if decision.promote:
        model.publish()
        previous = common.move_production_tag(model.id)
    result = {
        "model_id": model.id,
        "promoted": decision.promote,
        "reason": decision.reason,
        "previous_production": previous,
    }
    task.upload_artifact("decision", artifact_object=result, wait_on_upload=True)
    print(f"model {model.id} {verdict}: {decision.reason}")
    return result


def main(argv: list[str] | None = None) -> None:
    params = common.parse_cli(DEFAULTS, __doc__.split("\n\n")[0], argv)
    task, params = common.init_stage_task("register_model", Task.TaskTypes.qc, params)
    run(task, params)
    task.close()


if __name__ == "__main__":
    main()
