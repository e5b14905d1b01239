"""Move the `production` tag back to the previous published model.

"Previous" is the newest published model created before the current production model. Running the command
again steps back further. It takes the same lock as a promotion (`loop.registry.rollback`).

    python -m tasks.rollback
"""

from __future__ import annotations

import argparse

from loop import registry, settings
from loop.errors import exit_on_error


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", default=settings.PROJECT)
    args = parser.parse_args(argv)
    old, new = registry.rollback(args.project)
    print(f"production moved from {old} to {new}")


if __name__ == "__main__":
    main()
