"""Copy a ClearML server's history (projects, queues, tasks with their events and artifacts, models, dataset
versions, pipelines) onto another ClearML server, then verify the copy.

    python -m loop.migrate --from SOURCE.conf --to TARGET.conf [--project P ...] [--dry-run]

Each end is named by a `clearml.conf` (api, files and web servers, and a key pair). The id map is kept beside
the target's configuration (`--id-map` to choose): a second run copies only what is new, and a run that was
interrupted resumes where it stopped. The verification reads both servers through the SDK and exits non-zero on
any difference. Afterwards, point the loop at the target and register the trigger there
(`python -m triggers.retrain_trigger`; `make run` does it): schedulers are not carried over running.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from loop.errors import StageError, exit_on_error

from .copier import Migration
from .idmap import IdMap
from .server import Endpoint, Server
from .verify import verify


def default_id_map(target_config: Path) -> Path:
    return target_config.with_name(f"{target_config.name}.migration-ids.sqlite")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loop.migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, required=True, help="the source's clearml.conf")
    parser.add_argument("--to", dest="target", type=Path, required=True, help="the target's clearml.conf")
    parser.add_argument(
        "--project", action="append", default=[], help="copy only this project and its sub-projects (repeatable)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be copied and its size")
    parser.add_argument("--id-map", type=Path, help="default: beside the target's configuration")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip the final comparison")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    source_end, target_end = Endpoint.from_config(args.source), Endpoint.from_config(args.target)
    if source_end.api == target_end.api:
        raise StageError(f"--from and --to name the same server ({source_end.api})")
    id_map = args.id_map or default_id_map(target_end.config)
    if args.dry_run and not id_map.exists():
        id_map = Path(":memory:")  # a dry run leaves nothing behind
    try:
        ids = IdMap(id_map, source_end.api, target_end.api)
    except ValueError as error:
        raise StageError(str(error)) from None
    source, target = Server(source_end), Server(target_end)
    migration = Migration(source, target, ids, args.project, progress=not args.quiet)
    started = time.monotonic()
    try:
        if args.dry_run:
            print("\n".join(migration.plan()))
            return
        report = migration.run()
    finally:
        ids.close()
        source.close()
        target.close()
    print(f"copied in {time.monotonic() - started:.1f} s; id map: {id_map}")
    print("\n".join(report.lines()), flush=True)
    if not args.verify:
        return
    result = verify(source_end.config, target_end.config, id_map, args.project)
    print("\n".join(result.lines()), flush=True)
    if not result.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
