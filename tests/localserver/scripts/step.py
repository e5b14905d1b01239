"""A pipeline/agent step: reads its parameters from the server and reports one scalar."""

from clearml import Task

task = Task.init()
params = task.connect({"lr": 0.5, "dataset_id": ""})
print(f"step running with lr={params['lr']} dataset_id={params['dataset_id']}")
task.get_logger().report_scalar("params", "lr", float(params["lr"]), iteration=0)
