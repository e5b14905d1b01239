"""Promotion under overlapping runs against the embedded server: candidates promoted at the same moment from
separate processes, rollback in the middle, and an observer polling the registry all along."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from clearml import InputModel

from common.waiting import wait_until
from loop import registry, settings
from loop.errors import StageError
from loop.lock import ServerLock
from tests.support import RegistryObserver, assert_never_none_nor_two

CANDIDATE_SCRIPT = Path(__file__).with_name("promote_candidate.py")
ROUNDS = [[0.70, 0.90, 0.80, 0.60], [0.85, 0.95, 0.50, 0.93]]  # the best overall comes in the second round


def register_candidate(project: str, name: str, accuracy: float) -> str:
    model = InputModel.import_model(
        weights_url=f"{os.environ['CLEARML_FILES_HOST']}/{project}/{name}.pt",
        name=name,
        project=project,
        tags=[settings.CANDIDATE_TAG],
        create_as_published=False,
    )
    registry.set_metadata(model.id, {"accuracy": accuracy})
    return model.id


def start_candidates(env: dict, project: str, model_ids: list[str], judge_seconds: float) -> list[subprocess.Popen]:
    """One promoting process per model, released together once every one of them has imported the SDK."""
    go = Path(tempfile.mkdtemp(prefix="promote-", dir=env["PROMOTION_TEST_DIR"])) / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, str(CANDIDATE_SCRIPT), "--project", project, "--model-id", model_id]
            + ["--go-file", str(go), "--judge-seconds", str(judge_seconds)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for model_id in model_ids
    ]
    wait_until(lambda: len(list(go.parent.glob("go.ready-*"))) == len(processes), 60, "the candidates", 0.02)
    go.touch()
    return processes


def finish(processes: list[subprocess.Popen], timeout: float = 120) -> list[dict]:
    records = []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, output[-4000:]
        records.append(json.loads(output.strip().splitlines()[-1]))
    return records


@pytest.fixture
def env(clearml_env, tmp_path):
    return {**os.environ, **clearml_env, "PROMOTION_TEST_DIR": str(tmp_path)}


@pytest.mark.slow
def test_overlapping_promotions_keep_one_production_model_and_end_with_the_best(clearml_server, env):
    project = f"promotion-{uuid.uuid4().hex[:8]}"
    accuracy: dict[str, float] = {}
    records: list[dict] = []
    observer = RegistryObserver(project)
    observer.start()
    try:
        for number, values in enumerate(ROUNDS):
            ids = [register_candidate(project, f"r{number}-{value}", value) for value in values]
            accuracy.update(zip(ids, values, strict=True))
            records += finish(start_candidates(env, project, ids, judge_seconds=0.3))
            # Between rounds: exactly one model carries the tag, and it is the best so far.
            tagged = registry.list_models(project, settings.PRODUCTION_TAG, include_archived=True)
            assert [m.id for m in tagged] == [max(accuracy, key=accuracy.get)]
    finally:
        samples = observer.finish()
    assert len(samples) > 50, "the observer must have polled throughout"
    assert_never_none_nor_two(samples)

    production = registry.production_model(project)
    assert accuracy[production.id] == max(max(values) for values in ROUNDS)
    assert production.published and settings.CANDIDATE_TAG not in production.tags
    # Each run records what it was compared with; the promotions form one chain, each judged against the model
    # that was production when it was committed.
    by_id = {record["model_id"]: record for record in records}
    promoted = sorted(
        (registry.find_model(i) for i, record in by_id.items() if record["promoted"]),
        key=lambda model: model.promotion_seq,
    )
    assert [model.promotion_seq for model in promoted] == list(range(1, len(promoted) + 1))
    assert [by_id[model.id]["compared_with"] for model in promoted] == [None] + [m.id for m in promoted[:-1]]
    for model_id, record in by_id.items():
        stored = registry.find_model(model_id).metadata
        assert stored["compared_with"] == (record["compared_with"] or "")
        assert stored["promotion"].startswith("promoted" if record["promoted"] else "not promoted")
        assert [j["compared_with"] for j in stored["judgements"]] == [j["compared_with"] for j in record["judgements"]]
        assert record["judgements"][-1]["compared_with"] == record["compared_with"]
        if not record["promoted"]:
            assert accuracy[record["compared_with"]] > accuracy[model_id]
            assert not registry.find_model(model_id).published
    # Runs that lost the race were judged again against the newer production model, not published blindly.
    assert any(len(record["judgements"]) > 1 for record in records)


@pytest.mark.slow
def test_rollback_takes_the_same_lock_and_keeps_one_production_model(clearml_server, env):
    project = f"rollback-{uuid.uuid4().hex[:8]}"
    with pytest.raises(StageError, match="nothing to roll back"):
        registry.rollback(project)
    ids = [register_candidate(project, f"m{index}", value) for index, value in enumerate([0.6, 0.7, 0.8])]
    accuracy = dict(zip(ids, [0.6, 0.7, 0.8], strict=True))
    finish(start_candidates(env, project, ids[:1], 0.0))
    with pytest.raises(StageError, match="no earlier published model"):
        registry.rollback(project)
    finish(start_candidates(env, project, ids[1:2], 0.0))
    assert registry.production_model(project).id == ids[1]

    observer = RegistryObserver(project)
    observer.start()
    try:
        candidates = start_candidates(env, project, ids[2:], judge_seconds=1.5)
        time.sleep(0.3)  # the candidate is judging against ids[1] now
        assert registry.rollback(project) == (ids[1], ids[0])
        (record,) = finish(candidates)
        rolled_back_twice = registry.rollback(project)
    finally:
        samples = observer.finish()
    assert_never_none_nor_two(samples)
    # The candidate had judged against ids[1]; the rollback made ids[0] production, so it was judged again.
    assert [j["compared_with"] for j in record["judgements"]][-1] == ids[0] and record["promoted"]
    assert rolled_back_twice == (ids[2], ids[1]) and accuracy[ids[2]] == 0.8
    tagged = registry.list_models(project, settings.PRODUCTION_TAG, include_archived=True)
    assert [m.id for m in tagged] == [ids[1]]
    assert "rollback from" in registry.find_model(ids[1]).metadata["promotion"]


@pytest.mark.slow
def test_a_lock_left_by_a_dead_holder_is_broken_after_its_lease_and_only_once(clearml_server):
    name = f"lock-test-{uuid.uuid4().hex[:8]}/.lock"
    dead = ServerLock(name)
    dead.acquire()  # never released, as if the process had died
    started = time.monotonic()
    with ServerLock(name, lease_s=1.0, poll_s=0.05) as waiter:
        assert time.monotonic() - started >= 1.0
        assert waiter.held() and not dead.held()
        dead.release()  # the late release of the broken lock must not remove the waiter's
        assert waiter.held()
    assert waiter.state() is None
    with pytest.raises(StageError, match="is held by"):
        holder = ServerLock(name)
        holder.acquire()
        ServerLock(name, lease_s=60, timeout_s=0.5, poll_s=0.05).acquire()
    holder.release()
