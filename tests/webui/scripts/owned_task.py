"""Run as a user (their clearml.conf): one task of their own, and a draft of ``agent_body.py`` enqueued for an
agent that runs with other keys. Prints ``own <id>`` and ``draft <id>``."""

import sys
from pathlib import Path

from clearml import Task

project, queue = sys.argv[1], sys.argv[2]
task = Task.init(project_name=project, task_name="run as a user", reuse_last_task_id=False, auto_connect_streams=False)
task.get_logger().report_scalar("loss", "train", 0.5, iteration=0)
print("own", task.id, flush=True)
task.close()
draft = Task.create(
    project_name=project,
    task_name="enqueued by a user",
    script=str(Path(__file__).with_name("agent_body.py")),
    packages=False,
)
Task.enqueue(draft, queue_name=queue)
print("draft", draft.id, flush=True)
