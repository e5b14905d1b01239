"""Issue 22: a team's whole history moves to another ClearML server with `python -m loop.migrate`.

The source is an embedded server of its own with a real loop history (templates, pipeline, base dataset, two
feedback versions, three pipeline runs on real agents with the trigger service, one rollback); the targets are
fresh embedded servers. Every process talks to its server through the real SDK or the REST API; the tests run in
file order and build on each other's state.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
import requests

from common.waiting import wait_until
from devstack import agents
from devstack.processes import environ_without_clearml, free_port, run_in_own_group
from localserver import start_server_process
from localserver.limits import Limits
from loop import registry, settings, webpage
from loop.migrate.__main__ import default_id_map
from loop.migrate.copier import STAGING_PROJECT
from loop.migrate.server import Endpoint, Server
from tests import support
from triggers import retrain_trigger

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
HISTORY_TIMEOUT = 900
MIGRATE_TIMEOUT = 300


class Side:
    """One embedded server, its client configuration and a REST client on it."""

    def __init__(self, root: Path, name: str, limits: Limits | None = None):
        self.name = name
        self.data_dir = root / name
        self.server = start_server_process(self.data_dir, port=0, limits=limits, web_extensions=[webpage.SPEC])
        self.config = self.server.write_client_config(root / f"{name}.conf")
        self.env = {**self.server.client_env(self.config), "CLEARML_TASK_NO_REUSE": "1"}
        self.api = Server(Endpoint.from_config(self.config))

    def restart(self, limits: Limits | None = None) -> None:
        """The same server (data and port) started again, with `limits`."""
        self.server.stop()
        port = self.server.port
        self.server = start_server_process(self.data_dir, port=port, limits=limits, web_extensions=[webpage.SPEC])
        assert self.server.write_client_config(self.config) == self.config

    def tasks(self, **query) -> list[dict]:
        return self.api.call("tasks.get_all_ex", search_hidden=True, order_by=["created"], **query)["tasks"]

    def production(self) -> dict:
        """The production model as the registry picks it (during a promotion two models carry the tag)."""
        body = {"tags": [settings.PRODUCTION_TAG], "project": [self.project_id()], "ready": True}
        tagged = self.api.call("models.get_all_ex", **body)["models"]
        chosen = registry.pick_production(registry.RegistryModel.from_fields(model) for model in tagged)
        assert chosen is not None, "no production model"
        return next(model for model in tagged if model["id"] == chosen.id)

    def project_id(self, name: str = settings.PROJECT) -> str:
        found = self.api.call("projects.get_all_ex", name=f"^{re.escape(name)}$", search_hidden=True)["projects"]
        return found[0]["id"]

    def file_sha256(self, url: str) -> str:
        with tempfile.TemporaryFile() as handle:
            return self.api.download(url, handle)[1]

    def web_ids(self, path: str) -> set[str]:
        """The ids a web UI page names (signed in with the server's keys)."""
        with requests.Session() as web:
            keys = {"access_key": self.server.access_key, "secret_key": self.server.secret_key}
            assert web.post(f"{self.server.api_url}/login", data=keys, timeout=30).ok
            page = web.get(f"{self.server.api_url}{path}", timeout=30)
        assert page.status_code == 200, page.text[:500]
        return set(re.findall(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])", page.text))

    def stop(self) -> None:
        self.api.close()
        self.server.stop()


def migrate(source: Side, target: Side, *args: str, timeout: float = MIGRATE_TIMEOUT) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "loop.migrate", "--from", str(source.config), "--to", str(target.config)]
    return subprocess.run(
        [*command, "--quiet", *args],
        env=environ_without_clearml(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ids_of(target: Side) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(default_id_map(target.config))) as db:
        return dict(db.execute("SELECT source_id, target_id FROM ids WHERE state = 'done'"))


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    root = tmp_path_factory.mktemp("migrate")
    made: dict[str, Side] = {}
    yield root, made
    for side in made.values():
        side.stop()


@pytest.fixture(scope="module")
def source(sides):
    """The source server with its loop history (its agents stopped once it is made, as a team's old server
    would be before the move: the trigger service is left `in_progress`)."""
    root, made = sides
    made["source"] = side = Side(root, "source")
    work = root / "source-agents"
    started = [
        agents.start_agent(side.env, work, queue=settings.SERVICES_QUEUE, services_mode=True, create_queue=True),
        agents.start_agent(side.env, work, queue=[settings.DEFAULT_QUEUE, settings.TRAIN_QUEUE], create_queue=True),
    ]
    try:
        arguments = str(root / "images"), str(root / "history.json")
        made = support.run_module(side.env, "tests.loop.loop_history", *arguments, timeout=HISTORY_TIMEOUT)
    finally:
        for agent in started:
            agent.stop()
    (root / "history.log").write_text(made.stdout)
    side.history = json.loads((root / "history.json").read_text())
    return side


def new_side(sides, name: str, limits: Limits | None = None) -> Side:
    root, made = sides
    made[name] = side = Side(root, name, limits)
    return side


@pytest.fixture(scope="module")
def target(sides, source):
    side = new_side(sides, "target")
    side.first_run = migrate(source, side)
    return side


def test_the_target_reads_as_the_source(source, target):
    result = target.first_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "verified: the target reads as the source" in result.stdout
    assert re.search(r"^tasks: [1-9]\d* copied, 0 already there$", result.stdout, re.M), result.stdout
    ids = ids_of(target)
    # Checked here without the tool's own verification: the production model, its weights and its tag.
    history = source.history
    production = target.production()
    assert production["id"] == ids[history["production"]] and production["ready"]
    source_model = source.api.call("models.get_by_id", model=history["production"])["model"]
    assert target.file_sha256(production["uri"]) == source.file_sha256(source_model["uri"])
    assert production["labels"] == source_model["labels"]
    assert production["metadata"][registry.SEQ_KEY] == source_model["metadata"][registry.SEQ_KEY]
    # Every task came over, oldest first, with its status (the trigger service, left running, arrives stopped).
    source_tasks, target_tasks = source.tasks(), target.tasks()
    assert [ids[t["id"]] for t in source_tasks] == [t["id"] for t in target_tasks]
    statuses = {t["id"]: t["status"] for t in target_tasks}
    assert {statuses[ids[t["id"]]] for t in source_tasks if t["status"] == "in_progress"} <= {"stopped"}
    assert [statuses[ids[run]] for run in history["runs"]] == ["completed"] * 3
    # The dataset versions keep their lineage: each feedback version's parent is the copy of its parent.
    versions = [ids[version] for version in history["versions"]]
    for parent, child in zip(versions, versions[1:], strict=False):
        state = _artifact_json(target, child, "state")
        assert state["dependency_graph"][child] == [parent]
    # References point at copies: a run's steps name the run as parent, their dataset id is the copy's.
    (prepare,) = target.tasks(parent=ids[history["runs"][1]], name="^prepare_data$")
    assert prepare["hyperparams"]["General"]["dataset_id"]["value"] == versions[1]
    # Nothing is left half-copied (the hidden project of unfinished copies is gone), and no lock came over.
    assert not _has_project(target, STAGING_PROJECT)
    assert not _has_project(target, f"{settings.PROJECT}/{registry.PROMOTION_LOCK}")


def test_scalars_plots_and_console_arrive_whole(source, target):
    ids = ids_of(target)
    seen = set()
    for step in source.tasks(parent=source.history["runs"][0]):
        for event_type in ("training_stats_scalar", "log", "plot"):
            mine = _events(source, step["id"], event_type)
            theirs = _events(target, ids[step["id"]], event_type)
            assert [_comparable(e, source, target, ids) for e in mine] == [_comparable(e) for e in theirs]
            seen.update([event_type] if mine else [])
    assert seen == {"training_stats_scalar", "log", "plot"}, "a run's steps report all three"


def test_the_pipeline_pages_and_the_loop_page_read_the_same(source, target):
    ids = ids_of(target)
    run = source.history["runs"][-1]
    project = source.project_id(settings.PIPELINE_PROJECT)
    for path in ("/loop", "/pipelines", f"/pipelines/{project}", f"/pipelines/{project}/experiments/{run}"):
        mine = source.web_ids(path)
        assert run in mine or path == "/pipelines", f"{path} does not show the last run"
        translated_path = re.sub(r"[0-9a-f]{32}", lambda found: ids[found[0]], path)
        assert {ids.get(found, found) for found in mine} == target.web_ids(translated_path), path


def test_a_second_run_adds_nothing(source, target):
    before = len(target.tasks())
    again = migrate(source, target)
    assert again.returncode == 0, again.stdout[-4000:]
    for kind in ("projects", "queues", "tasks", "models"):
        assert re.search(rf"^{kind}: 0 copied, [1-9]\d* already there$", again.stdout, re.M), again.stdout
    assert len(target.tasks()) == before


def test_the_verification_names_what_differs(source, target, sides):
    """Tampering with a copy fails the verification, naming the object, and a repair makes it pass again."""
    copy = ids_of(target)[source.history["runs"][0]]
    tags = target.api.call("tasks.get_by_id", task=copy)["task"]["tags"]
    target.api.call("tasks.update", task=copy, tags=[*tags, "tampered"])
    try:
        tampered = migrate(source, target)
        assert tampered.returncode == 1
        assert f"DIFFERENT task 'retrain' ({copy}): fields differs" in tampered.stdout
    finally:
        target.api.call("tasks.update", task=copy, tags=tags)


def test_a_killed_run_resumes_and_ends_identical(source, target, sides):
    resumed = new_side(sides, "resumed")
    command = [sys.executable, "-m", "loop.migrate", "--from", str(source.config), "--to", str(resumed.config)]
    run = subprocess.Popen(
        [*command, "--quiet", "--no-verify"],
        env=environ_without_clearml(),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    id_map = default_id_map(resumed.config)

    def tasks_done() -> int:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{id_map}?mode=ro", uri=True)) as db:
                query = "SELECT count(*) FROM ids WHERE kind = 'tasks' AND state = 'done'"
                return db.execute(query).fetchone()[0]
        except sqlite3.OperationalError:  # not made yet, or its table not yet
            return 0

    try:
        wait_until(lambda: tasks_done() >= 5, 120, "the migration to copy a few tasks", interval=0.01)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    total = len(source.tasks())
    assert tasks_done() < total, "the run ended before it was killed"
    finished = migrate(source, resumed)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    assert "verified: the target reads as the source" in finished.stdout
    assert len(resumed.tasks()) == len(target.tasks()) == total
    assert not _has_project(resumed, STAGING_PROJECT)


def test_a_permanent_failure_names_the_object_and_leaves_nothing_half_copied(source, sides):
    """A target that refuses the first model's weights (uploads over 1 MB) stops the run with a message naming the
    model; no model and no task is visible there, and once the target takes them a new run completes the copy."""
    small = new_side(sides, "small", Limits(max_upload_mb=1))
    first = source.api.call("models.get_all_ex", order_by=["created"], page=0, page_size=1)["models"][0]
    failed = migrate(source, small)
    assert failed.returncode == 1
    assert f"error: model {first['name']!r} ({first['id']}): upload of " in failed.stderr, failed.stderr[-3000:]
    assert "HTTP 413" in failed.stderr
    assert small.api.call("models.get_all_ex")["models"] == []
    staging = small.project_id(STAGING_PROJECT)
    assert {task["project"] for task in small.tasks()} == {staging}, "tasks outside the hidden project"
    small.restart()
    finished = migrate(source, small)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    assert "verified: the target reads as the source" in finished.stdout


def test_a_dry_run_says_what_it_would_copy_and_copies_nothing(source, sides):
    empty = new_side(sides, "dry")
    result = migrate(source, empty, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    tasks, models = len(source.tasks()), len(source.api.call("models.get_all_ex")["models"])
    assert f"tasks: {tasks} on the source, 0 already copied" in result.stdout
    plan = re.search(r"^to copy: (\d+) tasks \((.*)\), (\d+) events, .*, (\d+) models \(", result.stdout, re.M)
    assert plan, result.stdout
    kinds = {kind: int(count) for count, kind in (part.split(" ", 1) for part in plan[2].split(", "))}
    assert int(plan[1]) == tasks and kinds["dataset versions"] == len(source.history["versions"])
    assert kinds["pipeline runs"] >= 3 and int(plan[3]) > 0 and int(plan[4]) == models
    assert empty.tasks() == [] and not default_id_map(empty.config).exists()


def test_one_project_alone(source, sides):
    only = new_side(sides, "templates")
    result = migrate(source, only, "--project", settings.TEMPLATE_PROJECT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "verified: the target reads as the source" in result.stdout
    templates = source.tasks(project=[source.project_id(settings.TEMPLATE_PROJECT)])
    assert sorted(t["name"] for t in only.tasks()) == sorted(t["name"] for t in templates) and templates
    assert only.api.call("models.get_all_ex")["models"] == []


def test_links_out_of_the_selected_projects_are_left_out(sides, tmp_path):
    """With `--project`, a task whose parent and a model whose task stay behind arrive without those links (a
    link would name nothing on the target), say so, and verify."""
    mixed, copy = new_side(sides, "mixed"), new_side(sides, "mixed-copy")
    kept, left = (mixed.api.call("projects.create", name=name)["id"] for name in ("kept", "left"))
    outside = mixed.api.call("tasks.create", name="outside", type="training", project=left)["id"]
    inside = mixed.api.call("tasks.create", name="inside", type="training", project=kept, parent=outside)["id"]
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 1000)
    with weights.open("rb") as handle:
        uri = mixed.api.upload("kept/weights.bin", handle, "weights.bin")
    mixed.api.call("models.create", name="m", uri=uri, project=kept, task=outside)
    result = migrate(mixed, copy, "--project", "kept")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "verified: the target reads as the source" in result.stdout
    assert "note: links (parent) to objects outside the migrated projects dropped (1)" in result.stdout
    assert "note: links (task) to objects outside the migrated projects dropped (1)" in result.stdout
    (task,) = copy.tasks()
    assert task["name"] == "inside" and not task.get("parent")
    (model,) = copy.api.call("models.get_all_ex")["models"]
    assert not model.get("task") and copy.file_sha256(model["uri"]) == mixed.file_sha256(uri)
    assert ids_of(copy).get(inside) == task["id"]


def test_the_dev_stack_on_the_target_serves_the_same_model_and_retrains_there(source, target, sides, tmp_path):
    ids = ids_of(target)
    production = target.production()["id"]
    templates = {t["id"] for t in target.tasks(project=[target.project_id(settings.TEMPLATE_PROJECT)])}
    app_port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = environ_without_clearml(CLEARML_CONFIG_FILE=str(target.config), HOME=str(home), CLEARML_TASK_NO_REUSE="1")
    log = tmp_path / "devstack.log"
    stack = subprocess.Popen(
        [sys.executable, "-m", "devstack", "run", "--data-dir", str(tmp_path / "data"), "--app-port", str(app_port)]
        + ["--trigger-poll-minutes", "0.05"],
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    seen: set[int] = set()
    try:

        def ready() -> bool:
            assert stack.poll() is None, f"the dev stack exited:\n{log.read_text(errors='replace')[-5000:]}"
            seen.update(_descendants(stack.pid))
            return "app ready" in log.read_text(errors="replace")

        wait_until(ready, 600, "the dev stack on the target", interval=1)
        text = log.read_text()
        assert "a ClearML server is configured" in text
        assert f"production model: {production}" in text
        served = requests.get(f"http://127.0.0.1:{app_port}/healthz", timeout=10).json()
        assert served["model_id"] == production == ids[source.history["production"]]
        # The stack registered on what was migrated: the same templates and pipeline, a new trigger service.
        assert {t["id"] for t in target.tasks(project=[target.project_id(settings.TEMPLATE_PROJECT)])} == templates
        # A new version on the target retrains there and the app follows the new production model.
        made = run_in_own_group(
            [sys.executable, "-m", "tests.loop.new_version", str(tmp_path / "images")], env, 300, cwd=REPO_ROOT
        )
        assert made.returncode == 0, made.stdout[-4000:]
        version = made.stdout.strip().splitlines()[-1]
        new = wait_until(
            lambda: (model := target.production())["id"] != production and model,
            600,
            "a retrain on the target to promote a new model",
            interval=2,
        )
        assert registry.decode_metadata(new["metadata"])["dataset_id"] == version
        # The new trigger service clones the migrated pipeline draft.
        (service,) = target.tasks(name=f"^{retrain_trigger.SCHEDULER_NAME}$", status=["in_progress"])
        assert ids[_registered_pipeline(source)] in service["comment"]
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{app_port}/healthz", timeout=10).json()["model_id"] == new["id"],
            120,
            "the app to serve the new model",
        )
        seen.update(_descendants(stack.pid))
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        try:
            stack.wait(timeout=120)
        finally:
            leftovers = {pid for pid in seen | {stack.pid} if psutil.pid_exists(pid) and _alive(pid)}
            for pid in leftovers:
                os.kill(pid, signal.SIGKILL)
    assert "stopped every process this command started" in log.read_text()
    assert not leftovers


# helpers
def _events(side: Side, task_id: str, event_type: str) -> list[dict]:
    answer = side.api.call("events.get_task_events", task=task_id, event_type=event_type, batch_size=10000)
    return answer["events"]


def _comparable(event: dict, source: Side | None = None, target: Side | None = None, ids=None) -> tuple:
    """What must survive of an event; a source event's text as it reads on the target (ids and server URLs)."""
    text = event.get("msg") or event.get("plot_str") or ""
    if source is not None:
        text = re.sub(r"[0-9a-f]{32}", lambda found: ids.get(found[0], found[0]), text)
        text = text.replace(source.server.api_url, target.server.api_url)
    values = (event.get("metric"), event.get("variant"), event.get("iter"), event.get("value"))
    return (*values, text, event.get("timestamp"))


def _artifact_json(side: Side, task_id: str, key: str) -> dict:
    (artifact,) = [
        a for a in side.api.call("tasks.get_by_id", task=task_id)["task"]["execution"]["artifacts"] if a["key"] == key
    ]
    with tempfile.TemporaryFile() as handle:
        side.api.download(artifact["uri"], handle)
        handle.seek(0)
        return json.loads(handle.read())


def _has_project(side: Side, name: str) -> bool:
    found = side.api.call("projects.get_all_ex", name=f"^{re.escape(name)}$", search_hidden=True)["projects"]
    return bool(found)


def _registered_pipeline(side: Side) -> str:
    project = side.project_id(settings.PIPELINE_PROJECT)
    (draft,) = side.tasks(project=[project], status=["created"], tags=["registered"])
    return draft["id"]


def _descendants(pid: int) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
