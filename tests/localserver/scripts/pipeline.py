"""Pipeline controller from registered tasks in $PIPELINE_PROJECT; steps go to $PIPELINE_STEP_QUEUE.

``pipeline.py local`` runs the steps as local subprocesses; without it (also how the services agent re-runs this
script, inheriting the environment through the agent) the controller goes to the ``services`` queue."""

import os
import sys

from clearml import PipelineController

project = os.environ["PIPELINE_PROJECT"]
pipe = PipelineController(name="pipe", project=project, version="1.0.0", pool_frequency=0.02)
pipe.set_default_execution_queue(os.environ.get("PIPELINE_STEP_QUEUE", "default"))
pipe.add_parameter("lr", 0.3)
pipe.add_step(
    name="step-one",
    base_task_project=project,
    base_task_name="base-step",
    parameter_override={"General/lr": "${pipeline.lr}"},
)
pipe.add_step(
    name="step-two",
    parents=["step-one"],
    base_task_project=project,
    base_task_name="base-step",
    parameter_override={"General/lr": "${step-one.parameters.General/lr}"},
)
if sys.argv[1:] == ["local"]:
    pipe.start_locally(run_pipeline_steps_locally=True)
else:
    pipe.start(queue="services")
print(f"controller {pipe.id}")
