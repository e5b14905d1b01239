"""Set up the ClearML Serving service of the production model (see `loop.clearml_serving`), then print how to
run its inference process.

    python -m serving.setup [--name pets-serving] [--project P] [--id-file FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from loop import clearml_serving, settings
from loop.errors import exit_on_error


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=clearml_serving.SERVICE_NAME, help="the serving service task's name")
    parser.add_argument("--project", default=settings.PROJECT, help="the models' project, also the service's")
    parser.add_argument("--id-file", type=Path, help="also write the service id here (for a pod)")
    args = parser.parse_args(argv)
    service = clearml_serving.set_up(args.name, args.project)
    if args.id_file:
        args.id_file.write_text(service.id)
    print(
        f"clearml-serving service {service.id}: endpoint {service.endpoint} (production: {service.production_model_id})"
    )
    print(f"run: CLEARML_SERVING_TASK_ID={service.id} uvicorn clearml_serving.serving.main:app --port 8080")


if __name__ == "__main__":
    main()
