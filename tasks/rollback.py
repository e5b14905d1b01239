"""Move the `production` tag back to the previous published model.

"Previous" is the newest published model created before the current production model. Running the command
again steps back further.

    python -m tasks.rollback
"""

from __future__ import annotations

import argparse

from clearml import Model

from tasks import common


def rollback(project: str = common.PROJECT) -> tuple[str, str]:
    """Returns (model id that lost the tag, model id that now carries it)."""
    current = common.production_model(project)
    if current is None:
        raise SystemExit(f"no production model in project {project!r}: nothing to roll back")
    published = Model.query_models(project_name=project, only_published=True)
    older = [model for model in published if model.id != current.id and _created(model) < _created(current)]
    if not older:
        raise SystemExit(f"production model {current.id} has no earlier published model to roll back to")
    target = max(older, key=_created)
    # Comment first: the SDK's model update writes back the tags it has cached.
    target.comment = f"{target.comment or ''}\nproduction again after rollback from {current.id}".strip()
    common.move_production_tag(target.id, project)
    return current.id, target.id


def _created(model: Model):
    return model._get_model_data().created


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", default=common.PROJECT)
    args = parser.parse_args(argv)
    old, new = rollback(args.project)
    print(f"production moved from {old} to {new}")


if __name__ == "__main__":
    main()
