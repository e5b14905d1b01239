"""One promotion run as its own process: judge a registered model by the classifier's gate (its `accuracy`
metadata against the production model's) and promote it through `loop.registry.promote`.

    python tests/loop/promote_candidate.py --project P --model-id M [--go-file F] [--judge-seconds S]

With `--go-file`, creates `F.ready-<pid>` once imported and waits for F to exist (so that several runs start
together); sleeps `--judge-seconds` inside each judgement (as a real evaluation takes time); prints the
promotion record as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from classifier.gate import decide_promotion
from common.waiting import wait_until
from loop import registry
from loop.errors import exit_on_error

TOLERANCE = 0.0


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", required=True)
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--go-file", type=Path)
    parser.add_argument("--judge-seconds", type=float, default=0.0)
    args = parser.parse_args()
    candidate = registry.find_model(args.model_id)

    def judge(production: registry.RegistryModel | None):
        time.sleep(args.judge_seconds)
        return decide_promotion(candidate.metadata, production.metadata if production else None, TOLERANCE)

    if args.go_file:
        Path(f"{args.go_file}.ready-{os.getpid()}").touch()
        wait_until(args.go_file.exists, 600, "the go file", interval=0.01)
    print(json.dumps(registry.promote(args.model_id, judge, project=args.project).to_dict()))


if __name__ == "__main__":
    main()
