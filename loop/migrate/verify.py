"""The migration's last step: both servers read through the SDK (`loop.migrate.snapshot`, one process each, run
side by side), the source as it reads once copied, and every difference listed."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from loop.errors import StageError

from .idmap import IdMap
from .server import Endpoint

MAX_LISTED = 20  # differences printed of each kind
KINDS = ("projects", "queues", "tasks", "models", "creation order", "production")


@dataclass
class Verification:
    counts: dict[str, tuple[int, int]]  # kind: (on the source, copied to the target)
    differences: list[str]
    others: Counter  # objects of the target's own, by kind

    @property
    def ok(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        out = [f"{kind}: source {source}, target {target}" for kind, (source, target) in self.counts.items()]
        if self.others:
            held = ", ".join(f"{count} {kind}" for kind, count in self.others.items())
            out.append(f"the target also holds objects of its own, not compared: {held}")
        listed = self.differences[:MAX_LISTED]
        out += [f"DIFFERENT {difference}" for difference in listed]
        if len(self.differences) > len(listed):
            out.append(f"... and {len(self.differences) - len(listed)} more differences")
        out.append("verified: the target reads as the source" if self.ok else f"{len(self.differences)} differences")
        return out


def snapshots(source_config: Path, target_config: Path, id_map: Path, projects: list[str]) -> tuple[dict, dict]:
    """Both ends' snapshots, read side by side; what the readers print (the SDK's download bars) is shown only
    when one fails."""
    selection = [argument for project in projects for argument in ("--project", project)]
    command = [sys.executable, "-m", "loop.migrate.snapshot", *selection]
    with tempfile.TemporaryDirectory(prefix="migrate-verify-") as tmp:
        ends = {
            "source": ["--config", str(source_config), "--as-copied-to", str(target_config), "--id-map", str(id_map)],
            "target": ["--config", str(target_config)],
        }
        runs = {}
        for end, arguments in ends.items():
            with open(Path(tmp) / f"{end}.log", "wb") as log:
                out = ["--out", str(Path(tmp) / f"{end}.json")]
                runs[end] = subprocess.Popen(
                    [*command, *arguments, *out], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
        failed = [end for end, run in runs.items() if run.wait() != 0]
        for end in failed:
            print((Path(tmp) / f"{end}.log").read_text(errors="replace")[-6000:], file=sys.stderr)
        if failed:
            raise StageError(f"reading the {' and the '.join(failed)} for the verification failed (output above)")
        return tuple(json.loads((Path(tmp) / f"{end}.json").read_text()) for end in ends)


def compare(source: dict, target: dict, copies: set[str]) -> Verification:
    """Differences between the source as copied and the target. The target may hold more than the copies
    (`copies`: the target ids of the id map): those objects are counted, not compared."""
    counts, differences, others = {}, [], Counter()
    for kind in KINDS:
        mine, theirs = source.get(kind), target.get(kind)
        if kind == "production":
            counts[kind] = (int(mine is not None), int(theirs is not None))
            if mine != theirs:
                differences.append(f"production model: the source's is {mine} once copied, the target's {theirs}")
        elif kind == "creation order":
            if mine != [key for key in theirs if key in set(mine)]:
                differences.append("creation order: tasks and models were created in another order")
        elif isinstance(mine, list):
            counts[kind] = (len(mine), len(set(theirs) & set(mine)))
            differences += [f"{kind}: {name!r} only on the source" for name in sorted(set(mine) - set(theirs))]
            others[kind] = len(set(theirs) - set(mine))
        else:
            counts[kind] = (len(mine), len(mine.keys() & theirs.keys()))
            for key in mine.keys() - theirs.keys():
                differences.append(f"{kind[:-1]} {mine[key].get('name')!r}: not copied (would be {key})")
            for key in theirs.keys() - mine.keys():
                if key in copies:
                    differences.append(f"{kind[:-1]} {theirs[key].get('name')!r} ({key}): a copy of nothing")
                else:
                    others[kind] += 1
            for key in sorted(mine.keys() & theirs.keys()):
                for aspect in sorted(set(mine[key]) | set(theirs[key])):
                    if mine[key].get(aspect) != theirs[key].get(aspect):
                        differences.append(f"{kind[:-1]} {mine[key].get('name')!r} ({key}): {aspect} differs")
    return Verification(counts, differences, +others)


def verify(source_config: Path, target_config: Path, id_map: Path, projects: list[str]) -> Verification:
    ids = IdMap(id_map, Endpoint.from_config(source_config).api, Endpoint.from_config(target_config).api)
    copies = set(ids.targets.values())
    ids.close()
    return compare(*snapshots(source_config, target_config, id_map, projects), copies)
