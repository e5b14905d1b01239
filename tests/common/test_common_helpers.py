"""The project's one atomic write and one wait-until."""

from __future__ import annotations

import time

import pytest

from common.files import atomic_write, write_atomically
from common.waiting import wait_until


@pytest.mark.parametrize("durable", [True, False])
def test_atomic_write_replaces_the_whole_file(tmp_path, durable):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    write_atomically(target, b"new content", durable=durable)
    assert target.read_bytes() == b"new content"
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_write(target, durable=True) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]


def test_a_temporary_folder_on_the_same_filesystem_holds_the_partial_file(tmp_path):
    staging, target = tmp_path / "tmp", tmp_path / "data" / "batch.json"
    staging.mkdir()
    target.parent.mkdir()
    with atomic_write(target, durable=True, tmp_dir=staging) as handle:
        handle.write(b"{}")
        assert [path.parent for path in staging.iterdir()] == [staging]
        assert not target.exists()
    assert target.read_bytes() == b"{}"
    assert list(staging.iterdir()) == []


def test_wait_until_returns_what_the_condition_returned():
    calls = []

    def third_time():
        calls.append(1)
        return "ready" if len(calls) == 3 else None

    assert wait_until(third_time, 5, "the third call", interval=0.01) == "ready"
    assert len(calls) == 3


def test_wait_until_names_what_it_waited_for_and_keeps_to_its_timeout():
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="waiting for the moon"):
        wait_until(lambda: False, 0.3, "the moon", interval=10)
    assert 0.3 <= time.monotonic() - started < 2  # the interval is cut at the deadline


def test_wait_until_stops_when_the_condition_raises():
    def died():
        raise RuntimeError("the process exited")

    with pytest.raises(RuntimeError, match="exited"):
        wait_until(died, 60, "a dead process")
