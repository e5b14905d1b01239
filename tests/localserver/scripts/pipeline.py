"""Pipeline controller from registered tasks: ``pipeline.py PROJECT local`` runs steps as local subprocesses;
without ``local`` (also how the services agent re-runs it) it goes to the ``services`` queue."""

import sys

from clearml import PipelineController

project = sys.argv[1] if len(sys.argv) > 1 else "pipeline-remote"
mode = sys.argv[2] if len(sys.argv) > 2 else "remote"
pipe = PipelineController(name="pipe", project=project, version="1.0.0", pool_frequency=0.02)
pipe.set_default_execution_queue("default")
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
if mode == "local":
    pipe.start_locally(run_pipeline_steps_locally=True)
else:
    pipe.start(queue="services")
print(f"controller {pipe.id}")
