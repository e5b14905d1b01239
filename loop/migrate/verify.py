"""The migration's last step: both servers read through the SDK (`loop.migrate.snapshot`, one process each, run
side by side), the source as it reads once copied, and every difference listed."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAX_LISTED = 20  # differences printed of each kind
KINDS = ("projects", "queues", "tasks", "models", "creation order", "production")


@dataclass
class Verification:
    counts: dict[str, tuple[int, int]]  # kind: (source, target)
    differences: list[str]

    @property
    def ok(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        out = [f"{kind}: source {source}, target {target}" for kind, (source, target) in self.counts.items()]
        listed = self.differences[:MAX_LISTED]
        out += [f"DIFFERENT {difference}" for difference in listed]
        if len(self.differences) > len(listed):
            out.append(f"... and {len(self.differences) - len(listed)} more differences")
        out.append("verified: the target reads as the source" if self.ok else f"{len(self.differences)} differences")
        return out


def snapshots(source_config: Path, target_config: Path, id_map: Path, projects: list[str]) -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory(prefix="migrate-verify-") as tmp:
        outputs = Path(tmp) / "source.json", Path(tmp) / "target.json"
        selection = [argument for project in projects for argument in ("--project", project)]
        command = [sys.executable, "-m", "loop.migrate.snapshot", *selection]
        runs = [
            subprocess.Popen(
                [*command, "--config", str(source_config), "--out", str(outputs[0]), "--as-copied-to"]
                + [str(target_config), "--id-map", str(id_map)],
                stdin=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [*command, "--config", str(target_config), "--out", str(outputs[1])], stdin=subprocess.DEVNULL
            ),
        ]
        codes = [run.wait() for run in runs]
        if any(codes):
            raise RuntimeError(f"reading the servers failed (exit codes {codes}); see the output above")
        return tuple(json.loads(path.read_text()) for path in outputs)


def compare(source: dict, target: dict) -> Verification:
    counts, differences = {}, []
    for kind in KINDS:
        mine, theirs = source.get(kind), target.get(kind)
        if kind == "production":
            counts[kind] = (int(mine is not None), int(theirs is not None))
            if mine != theirs:
                differences.append(f"production model: source's copy is {mine}, target serves {theirs}")
            continue
        if kind == "creation order":
            if mine != theirs:
                differences.append("creation order: tasks and models were created in another order")
            continue
        counts[kind] = (len(mine), len(theirs))
        if isinstance(mine, list):
            differences += [f"{kind}: {name!r} only on the source" for name in sorted(set(mine) - set(theirs))]
            differences += [f"{kind}: {name!r} only on the target" for name in sorted(set(theirs) - set(mine))]
            continue
        for key in mine.keys() - theirs.keys():
            differences.append(f"{kind[:-1]} {mine[key].get('name')!r}: not copied (would be {key})")
        for key in theirs.keys() - mine.keys():
            differences.append(f"{kind[:-1]} {theirs[key].get('name')!r} ({key}): only on the target")
        for key in sorted(mine.keys() & theirs.keys()):
            for aspect in sorted(set(mine[key]) | set(theirs[key])):
                if mine[key].get(aspect) != theirs[key].get(aspect):
                    differences.append(f"{kind[:-1]} {mine[key].get('name')!r} ({key}): {aspect} differs")
    return Verification(counts, differences)


def verify(source_config: Path, target_config: Path, id_map: Path, projects: list[str]) -> Verification:
    return compare(*snapshots(source_config, target_config, id_map, projects))
