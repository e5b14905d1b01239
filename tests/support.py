"""Helpers shared by the tests (fixtures are in conftest.py): ClearML entry points run as real processes against
the session's server, task lookups and generated image folders. Ports and polling come from
`devstack.processes` (`free_port`, `wait_until`), which the dev stack and the benchmarks use too."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from clearml import Task

from classifier.synthetic import make_image_folder
from devstack.processes import independent_environ, run_in_own_group
from loop import registry, settings, stages


def run_module(env: dict[str, str], module: str, *args: str, timeout: float = 240, check: bool = True):
    """`python -m module args` with `env`; its whole process group is killed afterwards."""
    result = run_in_own_group(
        [sys.executable, "-m", module, *args], env={**independent_environ(), **env}, timeout=timeout
    )
    if check:
        assert result.returncode == 0, f"{module} {args} exited with {result.returncode}:\n{result.stdout[-6000:]}"
    return result


def newest_task(name: str, project: str = settings.PROJECT) -> Task:
    found = stages.find_tasks(project, name)
    assert found, f"no task {name!r} in {project}"
    return found[0]


def image_folder(root: Path, classes: list[str], per_class: int, start: int = 0) -> Path:
    """Generated 64 px images `start .. start+per_class-1` of each class, `<root>/<class>/<image>`."""
    return make_image_folder(root, classes, per_class, size=64, start=start)


class RegistryObserver(threading.Thread):
    """Polls the registry as fast as it can: the models carrying the tag (published), and what readers resolve."""

    def __init__(self, project: str, interval: float = 0.0):
        super().__init__(daemon=True)
        self.project = project
        self.interval = interval
        self.samples: list[tuple[int, str | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            tagged = {m.id for m in registry.list_models(self.project, settings.PRODUCTION_TAG, published_only=True)}
            resolved = registry.production_model(self.project)
            self.samples.append((len(tagged), resolved.id if resolved else None))

    def finish(self) -> list[tuple[int, str | None]]:
        self.stop.set()
        self.join()
        return self.samples


def assert_never_none_nor_two(samples: list[tuple[int, str | None]]) -> None:
    """Once a model carries the tag, one or two (for the instant of a move) always do; once a reader resolved a
    production model, every later reader does. (The two figures of a sample come from two queries, one after
    the other, so each is checked on its own.)"""
    counts = [count for count, _ in samples]
    first_tagged = next(index for index, count in enumerate(counts) if count)
    assert all(1 <= count <= 2 for count in counts[first_tagged:]), sorted(set(counts[first_tagged:]))
    resolved = [model_id for _, model_id in samples]
    first_resolved = next(index for index, model_id in enumerate(resolved) if model_id)
    assert all(resolved[first_resolved:]), "a reader found no production model after the first promotion"


class EndpointRequests(threading.Thread):
    """Posts one image to a clearml-serving endpoint in a loop: (sent at, status, model id, latency) of each
    answer, and the classes each model answered with."""

    def __init__(self, url: str, image: bytes):
        super().__init__(daemon=True)
        self.url, self.image = url, image
        self.answers: list[tuple[float, int, str | None, float]] = []
        self.classes: dict[str, set[str]] = {}  # by model id
        self.stopped = threading.Event()

    def run(self) -> None:
        import requests

        from devstack.clearml_serving import OCTET_STREAM

        with requests.Session() as session:
            while not self.stopped.is_set():
                sent = time.monotonic()
                try:
                    response = session.post(self.url, data=self.image, headers=OCTET_STREAM, timeout=30)
                    answer = response.json() if response.status_code == 200 else {}
                    model, status = answer.get("model_id"), response.status_code
                    self.classes.setdefault(model, set(answer.get("probabilities", ())))
                except requests.RequestException:
                    model, status = None, 0
                self.answers.append((sent, status, model, time.monotonic() - sent))

    def first_answer_from(self, model_id: str, since: float) -> float | None:
        return next((sent for sent, _, model, _ in self.answers if model == model_id and sent >= since), None)

    def stop(self) -> set[int]:
        """Stop posting; the statuses of every answer."""
        self.stopped.set()
        self.join(30)
        return {status for _, status, _, _ in self.answers}
