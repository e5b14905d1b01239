"""A task body without the SDK (fast): records which task ran, once per execution, in MARKER_DIR."""

import os
import pathlib

task_id = os.environ["CLEARML_TASK_ID"]
marker_dir = pathlib.Path(os.environ["MARKER_DIR"])
(marker_dir / f"{task_id}.{os.getpid()}").write_text(os.environ.get("CLEARML_WORKER_ID", ""))
