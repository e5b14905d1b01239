"""What the agent runs for ``owned_task.py``: a task body that reports one value."""

from clearml import Task

task = Task.init()
task.get_logger().report_scalar("ran", "by agent", 1.0, iteration=0)
print("agent body done", flush=True)
