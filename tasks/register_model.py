"""Stage 4: the promotion gate. Publish the candidate and make it the production model, or refuse.

Input: `evaluate_task_id` (its `evaluation` artifact; empty: the newest completed evaluate task of the loop's
project, its pipeline runs and its templates' clones), `tolerance` and `log_loss_tolerance`. The candidate is
promoted when, on the classes both models know, its accuracy is not worse than the production model's by more
than `tolerance` and its log loss not higher by more than `log_loss_tolerance` (`classifier.gate`), or when
there is no production model yet. The promotion is a compare-and-set (`loop.registry.promote`): if another run
promoted a model since the evaluation, the candidate is evaluated again against that model before anything is
published. A candidate that is the production model already (the evaluate template's default) stays so, judged
by nobody. A refused candidate stays unpublished, with the reason in its comment. The task records which model
the candidate was compared with and why it was or was not promoted (user properties and the `decision`
artifact); the model's metadata holds the same.

    python -m tasks.register_model --evaluate-task-id <id> --tolerance 0.02 --log-loss-tolerance 0.05
"""

from __future__ import annotations

from clearml import Task

from classifier.gate import DEFAULT_LOG_LOSS_TOLERANCE, decide_promotion
from loop import registry, settings, stages
from loop.errors import StageError
from tasks import evaluate as evaluate_stage

DEFAULTS = {"evaluate_task_id": "", "tolerance": 0.02, "log_loss_tolerance": DEFAULT_LOG_LOSS_TOLERANCE}
# Where the loop's evaluate tasks run: by hand, as pipeline steps, as clones of the registered template.
EVALUATION_PROJECTS = (settings.PROJECT, settings.PIPELINE_PROJECT, settings.TEMPLATE_PROJECT)
NEWEST_EVALUATIONS_SEARCHED = 20


def newest_evaluation_task_id() -> str:
    """The newest completed evaluate task that left an evaluation (a failed upload leaves a completed task without)."""
    for candidate in stages.find_tasks(
        EVALUATION_PROJECTS,
        None,
        statuses=["completed"],
        types=[evaluate_stage.STAGE.task_type.value],
        limit=NEWEST_EVALUATIONS_SEARCHED,
    ):
        if evaluate_stage.EVALUATION_ARTIFACT in candidate.artifacts:
            return candidate.id
    raise StageError(f"no evaluate_task_id given and no completed evaluation in {', '.join(EVALUATION_PROJECTS)}")


def run(task: Task, params: dict) -> dict:
    evaluate_task_id = params["evaluate_task_id"] or newest_evaluation_task_id()
    stages.record_resolved(task, params, "evaluate_task_id", evaluate_task_id)
    evaluation = stages.task_artifact(evaluate_task_id, evaluate_stage.EVALUATION_ARTIFACT)
    candidate_id = evaluation["model_id"]
    evaluated_against = evaluation.get("production_model_id")
    reevaluated_against: list[str | None] = []

    def judge(production: registry.RegistryModel | None):
        production_id = production.id if production else None
        if production_id != evaluation.get("production_model_id"):
            # Production changed since the evaluation: compare with the model that is production now.
            print(f"production is now {production_id}, not {evaluation.get('production_model_id')}: evaluating again")
            evaluation.update(evaluate_stage.evaluate_against(evaluation, production_id))
            reevaluated_against.append(production_id)
        shared = evaluation.get("shared")
        candidate_metrics = shared["candidate"] if shared else evaluation["candidate"]
        production_metrics = shared["production"] if shared else None
        return decide_promotion(
            candidate_metrics, production_metrics, params["tolerance"], params["log_loss_tolerance"]
        )

    registry.set_metadata(
        candidate_id,
        {"metrics": {k: v for k, v in evaluation["candidate"].items() if isinstance(v, (int, float))}},
    )
    record = registry.promote(candidate_id, judge)
    result = record.to_dict() | {"evaluated_against": evaluated_against, "reevaluated_against": reevaluated_against}
    task.set_user_properties(
        compared_with=record.compared_with or "",
        promoted=str(record.promoted),
        reason=record.reason,
        judgements=str(len(record.judgements)),
    )
    task.upload_artifact("decision", artifact_object=result, wait_on_upload=True)
    print(f"model {candidate_id} {'promoted' if record.promoted else 'not promoted'}: {record.reason}")
    return result


PARAMETER_HELP = {
    "evaluate_task_id": "the evaluate task whose candidate is judged; empty: the newest completed one",
    "tolerance": "how much lower than production's the candidate's accuracy may be",
    "log_loss_tolerance": "how much higher than production's the candidate's log loss may be (nats)",
}
STAGE = stages.Stage("register_model", Task.TaskTypes.qc, DEFAULTS, run, __doc__.split("\n\n")[0], PARAMETER_HELP)


def main(argv: list[str] | None = None) -> None:
    stages.main(STAGE, argv)


if __name__ == "__main__":
    main()
