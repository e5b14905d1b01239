"""A tiny "training" task for the web UI tests: reads General/epochs, reports a loss curve and a confusion
matrix, and prints its progress."""

from clearml import Task

task = Task.init()
params = task.connect({"epochs": 2}, name="General")
epochs = int(params["epochs"])
logger = task.get_logger()
for epoch in range(epochs):
    logger.report_scalar("loss", "train", 1.0 / (epoch + 1), iteration=epoch)
    logger.report_scalar("loss", "val", 1.2 / (epoch + 1), iteration=epoch)
    print(f"epoch {epoch + 1}/{epochs} done")
logger.report_confusion_matrix(
    "confusion", "val", matrix=[[5, 1], [2, 7]], iteration=epochs, xlabels=["cat", "dog"], ylabels=["cat", "dog"]
)
print(f"trained for {epochs} epochs")
