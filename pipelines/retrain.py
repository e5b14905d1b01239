"""The retraining pipeline: prepare_data -> train -> evaluate -> register_model, cloned from the templates.

A `PipelineController` whose steps clone the stage templates (`python -m tasks.register`), wired with
`${pipeline.dataset_id}` and step references. Training goes to the GPU queue, the other steps to `default`.

    python -m pipelines.retrain register [--train-queue gpu] [--default-queue default]   # templates too
    python -m pipelines.retrain run --dataset-id <id> [--queue services]   # clone the registered pipeline
    python -m pipelines.retrain run --dataset-id <id> --local [--steps-on-agents]

`register` stores one draft controller (cloneable from the UI: edit `Args/dataset_id` and enqueue it on
`services`). `run --queue` clones and enqueues it; `run --local` runs the controller in this process, its
steps as local sub-processes or, with `--steps-on-agents`, on the agents' queues.
"""

from __future__ import annotations

import argparse
import os
import sys

from clearml import PipelineController, Task

from classifier.gate import DEFAULT_LOG_LOSS_TOLERANCE
from loop import datasets, settings, stages
from loop.errors import StageError, exit_on_error
from tasks.register import register_templates

REGISTERED_TAG = "registered"
CONTROLLER_ENTRY = "pipelines.retrain:run_controller"
# Minutes between the controller's checks of its steps (the SDK's default is 0.2): each step waits for one check
# after its upstream completes. A check is one query; the environment variable overrides it.
POOL_MINUTES_ENV = "CLASSIFIER_PIPELINE_POOL_MINUTES"
DEFAULT_POOL_MINUTES = 0.01
PARAMETERS = {
    "dataset_id": ("", "dataset version to train on"),
    "mode": ("head", "training mode: head (cached embeddings) or full fine-tuning"),
    "epochs": (10, "training epochs"),
    "backbone": ("efficientnet_lite0", "backbone of a model trained from scratch"),
    "tolerance": (0.02, "promotion gate: how much lower than production's the candidate's accuracy may be"),
    "log_loss_tolerance": (
        DEFAULT_LOG_LOSS_TOLERANCE,
        "promotion gate: how much higher than production's the candidate's log loss may be (nats)",
    ),
    "train_queue": (settings.TRAIN_QUEUE, "queue of the train step"),
    "default_queue": (settings.DEFAULT_QUEUE, "queue of the other steps"),
}


def build_pipeline(**values) -> PipelineController:
    """The controller with its four steps; `values` override the parameter defaults.

    Under an agent the parameters come from the controller task instead (edited in the UI, or set by the
    trigger), and the queues are read from them before the steps are added.
    """
    stages.standalone_code()
    pipe = PipelineController(
        name=settings.PIPELINE_NAME,
        project=settings.PROJECT,
        version="1.0.0",
        pool_frequency=float(os.environ.get(POOL_MINUTES_ENV) or DEFAULT_POOL_MINUTES),
        add_pipeline_tags=True,
        abort_on_failure=True,
    )
    for name, (default, description) in PARAMETERS.items():
        pipe.add_parameter(name, values.get(name, default), description)
    stored = {}
    if not Task.running_locally():
        stored = pipe.task.get_parameters_as_dict().get("Args", {})
        # A run is a clone of the registered draft and inherits its tag; only the draft keeps it.
        pipe.task.set_tags([tag for tag in pipe.task.get_tags() or [] if tag != REGISTERED_TAG])
    args = {name: stored.get(name) or values.get(name, default) for name, (default, _) in PARAMETERS.items()}

    template = {"base_task_project": settings.TEMPLATE_PROJECT}
    pipe.add_step(
        name="prepare_data",
        base_task_name="prepare_data",
        parameter_override={"General/dataset_id": "${pipeline.dataset_id}"},
        execution_queue=args["default_queue"],
        **template,
    )
    pipe.add_step(
        name="train",
        base_task_name="train",
        parents=["prepare_data"],
        parameter_override={
            "General/prepare_task_id": "${prepare_data.id}",
            "General/mode": "${pipeline.mode}",
            "General/epochs": "${pipeline.epochs}",
            "General/backbone": "${pipeline.backbone}",
        },
        execution_queue=args["train_queue"],
        **template,
    )
    pipe.add_step(
        name="evaluate",
        base_task_name="evaluate",
        parents=["train"],
        parameter_override={
            "General/prepare_task_id": "${prepare_data.id}",
            "General/model_id": "${train.models.output.-1.id}",
        },
        execution_queue=args["default_queue"],
        **template,
    )
    pipe.add_step(
        name="register_model",
        base_task_name="register_model",
        parents=["evaluate"],
        parameter_override={
            "General/evaluate_task_id": "${evaluate.id}",
            "General/tolerance": "${pipeline.tolerance}",
            "General/log_loss_tolerance": "${pipeline.log_loss_tolerance}",
        },
        execution_queue=args["default_queue"],
        **template,
    )
    return pipe


def run_controller() -> None:
    """What the registered controller runs under a `services` agent."""
    build_pipeline().start()


def register(**values) -> str:
    """Store the controller as a draft (once: a second call updates the same draft); returns its id.

    The stage templates it clones are registered (or updated) first.
    """
    register_templates()
    existing = registered_pipeline_id()
    if existing:
        task = Task.get_task(task_id=existing)
        for name, value in values.items():
            task.set_parameter(f"Args/{name}", value)
        return existing
    pipe = build_pipeline(**values)
    pipe.create_draft()
    stages.set_literal_script(pipe.task, CONTROLLER_ENTRY, "retrain_pipeline.py")
    # The SDK also records this command's own arguments under Args; only the pipeline parameters belong there.
    for key in pipe.task.get_parameters():
        if key.startswith("Args/") and key[len("Args/") :] not in PARAMETERS:
            pipe.task.delete_parameter(key)
    pipe.task.add_tags([REGISTERED_TAG])
    return pipe.task.id


def registered_pipeline_id() -> str | None:
    """The draft controller that `register` stored, if any (the oldest draft with the registered tag: clones
    inherit the tag, so a clone that is not enqueued yet looks the same, only newer)."""
    drafts = stages.find_tasks(settings.PIPELINE_PROJECT, None, statuses=["created"], tags=[REGISTERED_TAG])
    return drafts[-1].id if drafts else None


def enqueue_run(dataset_id: str, queue: str = settings.SERVICES_QUEUE, **values) -> str:
    """Clone the registered controller with these parameters and put it on `queue`; returns the run's id."""
    template_id = registered_pipeline_id()
    if not template_id:
        raise StageError("no registered pipeline: run `python -m pipelines.retrain register` first")
    run = Task.clone(source_task=template_id, name=settings.PIPELINE_NAME)
    run.update_parameters({"Args/dataset_id": dataset_id, **{f"Args/{k}": v for k, v in values.items()}})
    Task.enqueue(run, queue_name=queue)
    return run.id


def run_locally(dataset_id: str, steps_on_agents: bool = False, **values) -> bool:
    """Run the controller in this process; returns whether every step succeeded."""
    pipe = build_pipeline(dataset_id=dataset_id, **values)
    stages.set_literal_script(pipe.task, CONTROLLER_ENTRY, "retrain_pipeline.py")
    pipe.start_locally(run_pipeline_steps_locally=not steps_on_agents)
    return pipe.is_successful()


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("register", "run"):
        sub = commands.add_parser(command)
        for name, (default, description) in PARAMETERS.items():
            if name == "dataset_id" and command == "register":
                continue
            sub.add_argument(f"--{name.replace('_', '-')}", dest=name, type=type(default), help=description)
        if command == "run":
            sub.add_argument(
                "--queue", default=settings.SERVICES_QUEUE, help="queue of the controller (clone of the draft)"
            )
            sub.add_argument("--local", action="store_true", help="run the controller in this process")
            sub.add_argument("--steps-on-agents", action="store_true", help="with --local: steps go to queues")
    args = vars(parser.parse_args(argv))
    values = {name: args[name] for name in PARAMETERS if args.get(name) is not None}
    if args["command"] == "register":
        print(f"pipeline {settings.PIPELINE_NAME} registered: {register(**values)}")
        return
    dataset_id = values.pop("dataset_id", None) or datasets.latest_version_id()
    if not dataset_id:
        raise StageError("no --dataset-id given and the dataset has no version yet")
    if args["local"]:
        ok = run_locally(dataset_id, args["steps_on_agents"], **values)
        print(f"pipeline {'completed' if ok else 'FAILED'}")
        sys.exit(0 if ok else 1)
    print(f"pipeline run {enqueue_run(dataset_id, args['queue'], **values)} queued on {args['queue']}")


if __name__ == "__main__":
    main()
