"""The web UI in-process (Starlette's TestClient over a real LocalServer and SQLite store): sign-in, sessions,
CSRF, 404s, validation, escaping, and that each action does what the API call of the same name does."""

from __future__ import annotations

import json
import re

import pytest
from markupsafe import escape
from webui_testing import UIClient

from localserver import LocalServer
from localserver.webui import load_extension
from loop import webpage

PARAMS = {"General": {"epochs": {"section": "General", "name": "epochs", "value": "3", "type": "int"}}}


def make_task(ui: UIClient, name="train", status=None, **fields) -> str:
    project = ui.call("projects.create", {"name": f"p-{name}-{len(ui.call('projects.get_all', {})['projects'])}"})
    task_id = ui.call("tasks.create", {"name": name, "project": project["id"], "hyperparams": PARAMS, **fields})["id"]
    if status in ("in_progress", "completed"):
        ui.call("tasks.started", {"task": task_id})
    if status == "completed":
        ui.call("tasks.completed", {"task": task_id})
    return task_id


def task(ui: UIClient, task_id: str) -> dict:
    return ui.call("tasks.get_by_id", {"task": task_id})["task"]


def project_id(ui: UIClient, name: str) -> str:
    return ui.call("projects.get_all", {"name": f"^{re.escape(name)}$"})["projects"][0]["id"]


def error_message(response) -> str:
    match = re.search(r'id="error-message">([^<]*)<', response.text)
    return match.group(1) if match else ""


# sign-in and sessions
def test_signed_out_pages_redirect_to_sign_in_with_next(ui):
    task_id = make_task(ui)
    response = ui.http.get(f"/projects/*/tasks/{task_id}/output/log?lines=5")
    assert response.status_code == 303
    assert (
        response.headers["location"] == f"/login?next=%2Fprojects%2F%2A%2Ftasks%2F{task_id}%2Foutput%2Flog%3Flines%3D5"
    )
    assert ui.http.get(f"/_ui/tasks/{task_id}/scalars").status_code == 401
    assert ui.http.get("/_ui/tasks/status", params={"ids": task_id}).status_code == 401


def test_sign_in_sets_an_httponly_lax_cookie_and_goes_to_next(ui):
    keys = {"access_key": ui.server.access_key, "secret_key": ui.server.secret_key, "next": "/models"}
    response = ui.http.post("/login", data=keys)
    assert response.status_code == 303 and response.headers["location"] == "/models"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert ui.http.get("/models").status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_next_never_leaves_the_server(ui, target):
    keys = {"access_key": ui.server.access_key, "secret_key": ui.server.secret_key, "next": target}
    assert ui.http.post("/login", data=keys).headers["location"] == "/"


def test_wrong_keys_are_refused_without_a_session(ui):
    response = ui.http.post("/login", data={"access_key": ui.server.access_key, "secret_key": "wrong"})
    assert response.status_code == 401
    assert "Wrong access key or secret key" in response.text
    assert "set-cookie" not in response.headers
    assert ui.http.get("/projects").status_code == 303


def test_ui_sign_in_guesses_share_the_api_login_throttle(ui):
    for _ in range(ui.server.limits.login_failures_per_minute):
        assert ui.http.post("/login", data={"access_key": "x", "secret_key": "guess"}).status_code == 401
    keys = {"access_key": ui.server.access_key, "secret_key": ui.server.secret_key}
    response = ui.http.post("/login", data=keys)
    assert response.status_code == 429 and "Too many failed login attempts" in response.text
    assert "set-cookie" not in response.headers


def test_pages_ask_for_no_favicon_which_has_the_shape_of_an_api_path(ui):
    assert '<link rel="icon" href="data:,">' in ui.http.get("/login").text


def test_a_tampered_cookie_is_signed_out(ui):
    ui.sign_in()
    cookie = ui.http.cookies["localserver_ui"]
    ui.http.cookies.clear()
    ui.http.cookies.set("localserver_ui", cookie[:-2] + ("00" if cookie[-2:] != "00" else "11"))
    assert ui.http.get("/projects").status_code == 303


def test_rotating_the_keys_signs_everyone_out(ui, tmp_path):
    ui.sign_in()
    cookie = ui.http.cookies["localserver_ui"]
    ui.server.close()
    rotated = LocalServer(tmp_path / "server", access_key="NEWKEY", secret_key="new-secret")
    try:
        other = UIClient(rotated)
        other.http.cookies.set("localserver_ui", cookie)
        assert other.http.get("/projects").status_code == 303
    finally:
        rotated.close()
    ui.server = LocalServer(tmp_path / "server")  # for the fixture's close


def test_sign_out_needs_the_csrf_token_and_ends_the_session(ui):
    csrf = ui.sign_in()
    assert ui.http.post("/logout", data={}).status_code == 403
    response = ui.http.post("/logout", data={"csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert ui.http.get("/projects").status_code == 303


# CSRF on actions
@pytest.mark.parametrize("token", [None, "forged-token"])
def test_an_action_without_the_sessions_csrf_token_is_refused_and_changes_nothing(ui, token):
    task_id = make_task(ui)
    ui.sign_in()
    form = {"name": "stolen clone"} if token is None else {"name": "stolen clone", "csrf": token}
    response = ui.http.post(f"/tasks/{task_id}/actions/clone", data=form)
    assert response.status_code == 403
    assert "CSRF" in error_message(response)
    names = [t["name"] for t in ui.call("tasks.get_all", {})["tasks"]]
    assert "stolen clone" not in names


def test_a_csrf_token_of_another_session_is_refused(ui):
    task_id = make_task(ui)
    first = ui.sign_in()
    second = ui.sign_in()
    assert first != second
    response = ui.http.post(f"/tasks/{task_id}/actions/archive", data={"csrf": first})
    assert response.status_code == 403
    assert "archived" not in (task(ui, task_id).get("system_tags") or [])


# actions do what the API does
def test_clone_edit_and_enqueue_a_draft(ui):
    source = make_task(ui, "template")
    target = ui.call("projects.create", {"name": "elsewhere"})["id"]
    csrf = ui.sign_in()
    response = ui.http.post(f"/tasks/{source}/actions/clone", data={"csrf": csrf, "name": "my run", "project": target})
    assert response.status_code == 303
    clone_id = response.headers["location"].split("/tasks/")[1].split("/")[0]
    clone = task(ui, clone_id)
    assert (clone["name"], clone["project"], clone["parent"], clone["status"]) == ("my run", target, source, "created")

    response = ui.http.post(f"/tasks/{clone_id}/actions/edit-params", data={"csrf": csrf, "param:General/epochs": "7"})
    assert response.status_code == 303
    assert task(ui, clone_id)["hyperparams"]["General"]["epochs"]["value"] == "7"
    assert task(ui, source)["hyperparams"]["General"]["epochs"]["value"] == "3"

    queue = ui.call("queues.create", {"name": "gpu"})["id"]
    assert ui.http.post(f"/tasks/{clone_id}/actions/enqueue", data={"csrf": csrf, "queue": queue}).status_code == 303
    assert task(ui, clone_id)["status"] == "queued"
    assert [e["task"] for e in ui.call("queues.get_by_id", {"queue": queue})["queue"]["entries"]] == [clone_id]
    page = ui.http.get("/workers-and-queues")
    assert "my run" in page.text

    assert ui.http.post(f"/queues/{queue}/remove", data={"csrf": csrf, "task": clone_id}).status_code == 303
    assert task(ui, clone_id)["status"] == "created"
    assert ui.call("queues.get_by_id", {"queue": queue})["queue"]["entries"] == []


def test_pending_tasks_are_reordered_from_the_queues_page(ui):
    queue = ui.call("queues.create", {"name": "cpu"})["id"]
    first, second, third = (make_task(ui, name) for name in ("first", "second", "third"))
    for task_id in (first, second, third):
        ui.call("tasks.enqueue", {"task": task_id, "queue": queue})
    csrf = ui.sign_in()

    def order() -> list[str]:
        return [entry["task"] for entry in ui.call("queues.get_by_id", {"queue": queue})["queue"]["entries"]]

    page = ui.http.get("/workers-and-queues")
    assert page.text.count('action="/queues/' + queue + '/move"') == 3 * 4
    response = ui.http.post(f"/queues/{queue}/move", data={"csrf": csrf, "task": third, "to": "front"})
    assert response.status_code == 303 and response.headers["location"] == "/workers-and-queues#queue-cpu"
    assert order() == [third, first, second]
    ui.http.post(f"/queues/{queue}/move", data={"csrf": csrf, "task": third, "to": "backward"})
    assert order() == [first, third, second]

    response = ui.http.post(f"/queues/{queue}/move", data={"csrf": csrf, "task": third, "to": "sideways"})
    assert response.status_code == 400 and "Unknown move" in error_message(response)
    outside = make_task(ui, "outside")
    response = ui.http.post(f"/queues/{queue}/move", data={"csrf": csrf, "task": outside, "to": "front"})
    assert response.status_code == 400 and "is not in queue" in error_message(response)
    assert ui.http.post(f"/queues/{queue}/move", data={"task": third, "to": "front"}).status_code == 403  # no CSRF
    assert order() == [first, third, second]


def test_wrong_state_shows_the_api_error_and_changes_nothing(ui):
    task_id = make_task(ui, status="completed")
    csrf = ui.sign_in()
    before = task(ui, task_id)
    response = ui.http.post(f"/tasks/{task_id}/actions/edit-params", data={"csrf": csrf, "param:General/epochs": "9"})
    assert response.status_code == 400
    assert "only created tasks can be edited" in error_message(response)
    response = ui.http.post(f"/tasks/{task_id}/actions/dequeue", data={"csrf": csrf})
    assert response.status_code == 400 and "is not queued" in error_message(response)
    assert task(ui, task_id) == before


def test_abort_reset_publish_archive_restore_and_tags(ui):
    task_id = make_task(ui, status="in_progress")
    csrf = ui.sign_in()

    def act(action, **form):
        response = ui.http.post(f"/tasks/{task_id}/actions/{action}", data={"csrf": csrf, **form})
        assert response.status_code == 303, error_message(response)
        return task(ui, task_id)

    assert act("abort")["status"] == "stopped"
    assert act("reset")["status"] == "created"
    response = ui.http.post(f"/tasks/{task_id}/actions/publish", data={"csrf": csrf})
    assert response.status_code == 400 and "cannot change task" in error_message(response)
    assert "archived" in act("archive")["system_tags"]
    assert "archived" not in act("restore")["system_tags"]
    assert act("tags", add="best")["tags"] == ["best"]
    assert act("tags", remove="best")["tags"] == []
    ui.call("tasks.started", {"task": task_id})
    ui.call("tasks.completed", {"task": task_id})
    assert act("publish")["status"] == "published"


@pytest.mark.parametrize(
    ("action", "form", "message"),
    [
        ("clone", {"name": ""}, "The new task's name is required."),
        ("clone", {"name": "x" * 501}, "longer than 500"),
        ("edit-params", {"param:General/nope": "1"}, "no parameter General/nope"),
        ("edit-params", {"param:General/epochs": "3"}, "Nothing to change"),
        ("edit-params", {"new_name": "no-section"}, "Section/name"),
        ("enqueue", {}, "Queue is required."),
        ("enqueue", {"queue": "no-such-queue"}, "Invalid queue id"),
        ("tags", {}, "Give a tag to add or to remove."),
        ("tags", {"remove": "absent"}, "no tag 'absent'"),
        ("explode", {}, "Unknown action"),
    ],
)
def test_forms_are_validated_with_a_clear_message(ui, action, form, message):
    task_id = make_task(ui)
    csrf = ui.sign_in()
    before = task(ui, task_id)
    response = ui.http.post(f"/tasks/{task_id}/actions/{action}", data={"csrf": csrf, **form})
    assert response.status_code == 400
    assert message in error_message(response).replace("&#39;", "'")
    assert task(ui, task_id) == before


# pages
def test_unknown_ids_and_paths_are_404_pages(ui):
    ui.sign_in()
    for path in (
        "/projects/nope/tasks",
        "/projects/*/tasks/nope/output/log",
        "/models/nope",
        "/datasets/simple/nope/experiments/nope",
        "/pipelines/*/experiments/nope",
        "/no/such/page",
        "/compare?ids=nope1,nope2",
    ):
        response = ui.http.get(path)
        assert response.status_code == 404, path
        assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "query", ["status=bogus", "type=bogus", "sort=password", "page=-1", "page=x", "size=100000", "col=nometric"]
)
def test_bad_table_queries_answer_400_with_a_message(ui, query):
    ui.sign_in()
    response = ui.http.get(f"/projects/*/tasks?{query}")
    assert response.status_code == 400
    assert error_message(response)


def test_the_tasks_table_filters_sorts_and_pages_with_filters_in_the_url(ui):
    for index in range(7):
        task_id = make_task(ui, f"run-{index}", tags=["even"] if index % 2 == 0 else [])
        ui.call("events.add_batch", {"requests": [scalar(task_id, "loss", "val", 0, 10.0 - index)]})
    ui.sign_in()
    page = ui.http.get("/projects/*/tasks?tag=even&sort=name&size=2&col=loss/val").text
    assert re.findall(r">(run-\d)</a>", page) == ["run-0", "run-2"]
    assert ">10<" in page and ">8<" in page  # last value of loss/val
    assert 'href="?tag=even&sort=name&page=1&size=2&col=loss%2Fval"' in page.replace("&amp;", "&")
    page = ui.http.get("/projects/*/tasks?tag=even&sort=name&size=2&page=1&col=loss/val").text
    assert re.findall(r">(run-\d)</a>", page) == ["run-4", "run-6"]
    page = ui.http.get("/projects/*/tasks?name=run-3").text
    assert re.findall(r">(run-\d)</a>", page) == ["run-3"]


def test_the_tasks_table_says_how_many_tasks_match_on_every_page(ui):
    project = ui.call("projects.create", {"name": "counted"})["id"]
    for index in range(7):
        ui.call(
            "tasks.create", {"name": f"run-{index}", "project": project, "tags": ["even"] if index % 2 == 0 else []}
        )
    make_task(ui, "elsewhere")
    ui.sign_in()

    def total(query: str) -> str:
        page = ui.http.get(f"/projects/{project}/tasks?{query}").text
        return re.search(r'id="tasks-total">([^<]*)<', page).group(1), 'id="next-page"' in page

    assert total("size=3") == ("1–3 of 7 tasks", True)
    assert total("size=3&page=2") == ("7–7 of 7 tasks", False)
    assert total("size=25") == ("1–7 of 7 tasks", False)
    assert total("tag=even&size=2&page=1") == ("3–4 of 4 tasks", False)  # the last page: no next link
    assert total("name=run-3") == ("1–1 of 1 task", False)
    assert total("name=nothing") == ("0 tasks", False)


def scalar(task_id, metric, variant, iteration, value):
    stamp = 1_700_000_000_000 + iteration
    return {
        "task": task_id,
        "type": "training_stats_scalar",
        "metric": metric,
        "variant": variant,
        "iter": iteration,
        "value": value,
        "timestamp": stamp,
    }


def test_everything_reported_is_escaped(ui):
    hostile = '<script>alert("x")</script>'
    task_id = make_task(ui, hostile, comment=hostile)
    figure = {"data": [{"type": "heatmap", "z": [[1, 2], [3, 4]]}], "layout": {"title": "</script><img src=x>"}}
    ui.call(
        "events.add_batch",
        {
            "requests": [
                {
                    "task": task_id,
                    "type": "plot",
                    "metric": "cm",
                    "variant": hostile,
                    "iter": 1,
                    "plot_str": json.dumps(figure),
                },
                {"task": task_id, "type": "log", "msg": hostile, "timestamp": 1},
            ]
        },
    )
    ui.sign_in()
    for tab in ("execution", "info-output", "output/log", "output/metrics/plots"):
        page = ui.http.get(f"/projects/*/tasks/{task_id}/{tab}").text
        assert hostile not in page and "<img src=x>" not in page
    plots = ui.http.get(f"/projects/*/tasks/{task_id}/output/metrics/plots").text
    embedded = re.search(r'<script type="application/json" data-plot="plot-1">(.*?)</script>', plots, re.S).group(1)
    assert json.loads(embedded) == figure


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(document.cookie)",
        " javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "http://[broken/x.png",
    ],
)
def test_stored_uris_become_links_and_images_only_for_http_and_the_files_server(ui, uri):
    """A client stores a model's, an artifact's or a debug sample's URI; the web UI shows it as text unless it is
    http(s) or the server's own file: never a link or an image source that runs in the UI's origin."""
    task_id = make_task(ui)
    safe = "https://example.com/weights.pt"
    ui.call(
        "tasks.add_or_update_artifacts",
        {
            "task": task_id,
            "artifacts": [
                {"key": "hostile", "type": "custom", "mode": "output", "uri": uri},
                {"key": "fine", "type": "custom", "mode": "output", "uri": safe},
            ],
        },
    )
    image = {"task": task_id, "type": "training_debug_image", "metric": "samples", "variant": "x", "url": uri}
    ui.call("events.add_batch", {"requests": [{**image, "iter": 1}]})
    model_id = ui.call("models.create", {"name": "m", "task": task_id, "uri": uri})["id"]
    ui.sign_in()
    pages = {}
    for path in (
        f"/projects/*/tasks/{task_id}/artifacts",
        f"/projects/*/tasks/{task_id}/output/debugImages",
        f"/models/{model_id}",
    ):
        response = ui.http.get(path)
        assert response.status_code == 200, (path, response.text[-500:])
        pages[path] = response.text
        links = set(re.findall(r'(?:href|src)="([^"]*)"', response.text)) - {"data:,"}  # the page's own favicon
        assert not [link for link in links if not link.startswith(("/", "https://example.com/", "?"))], path
        assert escape(uri) in response.text, path  # shown, as text
    assert f'href="{safe}"' in pages[f"/projects/*/tasks/{task_id}/artifacts"]  # an http(s) URI stays a link


def test_scalars_json_and_csv(ui):
    task_id = make_task(ui)
    ui.call(
        "events.add_batch", {"requests": [scalar(task_id, "loss", v, i, i * 0.5) for v in ("a", "b") for i in range(4)]}
    )
    ui.sign_in()
    data = ui.http.get(f"/_ui/tasks/{task_id}/scalars").json()
    assert data["loss"]["a"]["x"] == [0, 1, 2, 3] and data["loss"]["b"]["y"] == [0, 0.5, 1.0, 1.5]
    by_time = ui.http.get(f"/_ui/tasks/{task_id}/scalars?x=timestamp").json()
    assert by_time["loss"]["a"]["x"][0] == 1_700_000_000_000
    assert ui.http.get(f"/_ui/tasks/{task_id}/scalars?x=bogus").status_code == 400
    csv = ui.http.get(f"/_ui/tasks/{task_id}/scalars.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[:3] == ["metric,variant,iter,value", "loss,a,0,0.0", "loss,a,1,0.5"]


def test_single_values_are_a_table_on_the_scalars_tab_not_a_chart(ui):
    """`Logger.report_single_value` writes a scalar at iteration -2^31 under "Summary"; it is shown as a table,
    and left out of the charts (by iteration an x axis at -2.1 billion; by time a one-point line)."""
    task_id = make_task(ui)
    hostile = "<b>best</b>"
    single = [scalar(task_id, "Summary", name, -(2**31), value) for name, value in (("accuracy", 0.93), (hostile, 7))]
    series = [scalar(task_id, "loss", "train", i, 1.0 / (i + 1)) for i in range(3)]
    series.append(scalar(task_id, "loss", "train", -(2**31), 0.2))  # a single value beside a series of its name
    ui.call("events.add_batch", {"requests": [*single, *series]})
    ui.sign_in()
    page = ui.http.get(f"/projects/*/tasks/{task_id}/output/metrics/scalar").text
    table = page.split('id="single-values"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td>", table)
    assert rows == [
        ("Summary", "&lt;b&gt;best&lt;/b&gt;", "7"),
        ("Summary", "accuracy", "0.93"),
        ("loss", "train", "0.2"),
    ]
    by_iteration = ui.http.get(f"/_ui/tasks/{task_id}/scalars").json()
    assert by_iteration == {"loss": {"train": {"name": "train", "x": [0, 1, 2], "y": [1.0, 0.5, 1 / 3]}}}
    by_time = ui.http.get(f"/_ui/tasks/{task_id}/scalars?x=timestamp").json()
    assert list(by_time) == ["loss"] and len(by_time["loss"]["train"]["x"]) == 4
    plain = make_task(ui, "no-single-values")
    assert 'id="single-values"' not in ui.http.get(f"/projects/*/tasks/{plain}/output/metrics/scalar").text


def test_files_are_proxied_only_for_a_session_and_only_from_the_store(ui):
    target = ui.server.files.root / "proj" / "task.1" / "image.png"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x89PNG fake")
    assert ui.http.get("/_ui/files/proj/task.1/image.png").status_code == 401
    ui.sign_in()
    response = ui.http.get("/_ui/files/proj/task.1/image.png")
    assert response.status_code == 200 and response.content == b"\x89PNG fake"
    assert ui.http.get("/_ui/files/proj/task.1/missing.png").status_code == 404
    assert ui.http.get("/_ui/files/proj/%2E%2E/%2E%2E/localserver.sqlite").status_code in (400, 404)


def test_compare_marks_differing_parameters(ui):
    first = make_task(ui, "a")
    second = make_task(ui, "b")
    ui.call(
        "tasks.edit",
        {
            "task": second,
            "hyperparams": {
                "General": {**PARAMS["General"], "lr": {"section": "General", "name": "lr", "value": "0.1"}}
            },
        },
    )
    ui.sign_in()
    page = ui.http.get(f"/compare?ids={first},{second}").text
    assert '<tr class=""><td>General/epochs</td>' in page
    assert '<tr class="differs"><td>General/lr <span class="muted">' in page
    assert ui.http.get(f"/compare?ids={first}").status_code == 400
    assert ui.http.get("/compare?ids=" + ",".join(f"id{i}" for i in range(11))).status_code == 400


def test_the_loop_page_follows_feedback_to_production(ui):
    """Documents shaped as the SDK writes them: dataset versions with their `Dataset Struct`, pipeline runs
    with `Args/dataset_id` and the `Pipeline` DAG, models with the gate's metadata and the production tag."""
    datasets = ui.call("projects.create", {"name": "selfimproving-classifier/.datasets/pets"})["id"]
    pipelines = ui.call("projects.create", {"name": "selfimproving-classifier/.pipelines/retrain"})["id"]
    registry_project = project_id(ui, "selfimproving-classifier")
    versions, promoted_at = [], None
    for index, verdict in enumerate(["promoted: first model", "not promoted: accuracy dropped by 0.08"]):
        version = ui.call("tasks.create", {"name": "pets", "project": datasets, "type": "data_processing"})["id"]
        struct = {"0": {"job_id": version, "parents": ["1"] if versions else []}}
        if versions:
            struct["1"] = {"job_id": versions[-1], "parents": []}
        config = {"Dataset Struct": {"name": "Dataset Struct", "value": json.dumps(struct), "type": "json"}}
        ui.call("tasks.edit", {"task": version, "configuration": config, "runtime": {"version": f"1.0.{index}"}})
        versions.append(version)
        steps = {}
        for step in ("train", "register_model"):
            steps[step] = ui.call("tasks.create", {"name": step, "project": pipelines})["id"]
            ui.call("tasks.started", {"task": steps[step]})
            ui.call("tasks.completed", {"task": steps[step]})
        dag = {
            "train": {"job_id": steps["train"], "parents": []},
            "register_model": {"executed": steps["register_model"], "parents": ["train"]},
        }
        args = {"Args": {"dataset_id": {"section": "Args", "name": "dataset_id", "value": version}}}
        run = ui.call(
            "tasks.create",
            {
                "name": "retrain",
                "project": pipelines,
                "type": "controller",
                "hyperparams": args,
                "configuration": {"Pipeline": {"name": "Pipeline", "value": json.dumps(dag)}},
            },
        )["id"]
        ui.call("tasks.started", {"task": run})
        ui.call("tasks.completed", {"task": run})
        metadata = [  # as loop.registry.encode_metadata writes them
            {"key": "promotion", "value": verdict, "type": "str"},
            {"key": "metrics", "value": json.dumps({"accuracy": 0.9 - index * 0.08}), "type": "json"},
        ]
        model = ui.call(
            "models.create",
            {
                "name": f"model-{index}",
                "project": registry_project,
                "task": steps["train"],
                "metadata": metadata,
                "tags": ["production"] if index == 0 else [],
                "ready": index == 0,
            },
        )["id"]
        if index == 0:
            promoted_at = task(ui, steps["register_model"])["completed"]
            production = model
    ui.sign_in()
    page = ui.http.get("/loop").text
    production_card = page.split('id="production"')[1].split("</div>")[0]
    assert f'href="/models/{production}"' in production_card and "model-0" in production_card
    assert promoted_at[:19].replace("T", " ") in production_card
    latest = page.split('id="latest-feedback"')[1].split("</div>")[0]
    assert "version 1.0.1" in latest and "did not reach production" in latest
    rows = page.split('id="loop"')[1].split("<tbody>")[1].split("<tr>")[1:]
    assert "1.0.1" in rows[0] and "not promoted: accuracy dropped by 0.08" in rows[0] and "accuracy=" in rows[0]
    assert "1.0.0" in rows[1] and "promoted: first model" in rows[1] and "production" in rows[1]
    assert ui.http.get("/loop?project=" + "x" * 201).status_code == 400


def test_the_loop_page_reads_only_the_newest_runs_and_no_drafts(ui, monkeypatch):
    monkeypatch.setattr(webpage, "MAX_RUNS", 2)
    pipelines = ui.call("projects.create", {"name": "selfimproving-classifier/.pipelines/retrain"})["id"]
    args = {"Args": {"dataset_id": {"section": "Args", "name": "dataset_id", "value": "gone"}}}
    for name in ("run-1", "run-2", "run-3", "draft"):
        run = ui.call("tasks.create", {"name": name, "project": pipelines, "type": "controller", "hyperparams": args})
        if name != "draft":
            ui.call("tasks.started", {"task": run["id"]})
    ui.sign_in()
    page = ui.http.get("/loop").text
    assert "Only the newest 2 pipeline runs are read." in page
    assert "2 pipeline runs name no dataset version listed here." in page  # the draft is no run


def test_the_loop_page_names_the_production_model_by_the_registrys_rule_while_the_tag_moves(ui):
    """Mid-promotion two published models carry the tag; the one with the higher promotion number is production."""
    tagged = {"project": ui.call("projects.create", {"name": "selfimproving-classifier"})["id"]}
    tagged.update(tags=["production"], ready=True)
    seq = [{"key": "promotion_seq", "value": "2", "type": "json"}]
    moving_to = ui.call("models.create", {"name": "new-one", "metadata": seq, **tagged})
    seq = [{"key": "promotion_seq", "value": "1", "type": "json"}]
    ui.call("models.create", {"name": "old-one", "metadata": seq, **tagged})
    ui.sign_in()
    production_card = ui.http.get("/loop").text.split('id="production"')[1].split("</div>")[0]
    assert f'href="/models/{moving_to["id"]}"' in production_card and "old-one" not in production_card


def test_debug_samples_are_served_through_the_proxy_and_paged_by_iteration(ui):
    task_id = make_task(ui)
    image = {"task": task_id, "type": "training_debug_image", "metric": "samples", "variant": "cat"}
    url = "http://127.0.0.1:8008/files/p/t.1/metrics/samples/cat_{:08d}.png"
    ui.call("events.add_batch", {"requests": [{**image, "iter": i, "url": url.format(i)} for i in range(8)]})
    ui.sign_in()
    page = ui.http.get(f"/projects/*/tasks/{task_id}/output/debugImages").text
    shown = re.findall(r'<img loading="lazy" src="(/_ui/files/p/t\.1/metrics/samples/cat_(\d+)\.png)"', page)
    assert [int(i) for _, i in shown] == [7, 6, 5, 4, 3]
    assert 'href="?older=5"' in page
    older = ui.http.get(f"/projects/*/tasks/{task_id}/output/debugImages?older=5").text
    assert [int(i) for i in re.findall(r"cat_(\d+)\.png\" alt", older)] == [2, 1, 0]
    assert "Older" not in older and 'href="?older=0"' in older


def test_model_page_and_model_actions(ui):
    task_id = make_task(ui)
    metadata = [{"key": "promotion", "value": "promoted: better", "type": "str"}]
    model_id = ui.call(
        "models.create",
        {
            "name": "pets-model",
            "task": task_id,
            "labels": {"cat": 0, "dog": 1},
            "metadata": metadata,
            "uri": "http://127.0.0.1:8008/files/p/t.1/models/model.pt",
        },
    )["id"]
    csrf = ui.sign_in()
    page = ui.http.get(f"/models/{model_id}").text
    assert 'href="/_ui/files/p/t.1/models/model.pt" id="download"' in page
    assert "promoted: better" in page and "<td>dog</td>" in page
    assert f"/tasks/{task_id}/" in page
    assert ui.http.get(f"/projects/*/models/{model_id}/general").status_code == 200
    assert ui.http.post(f"/models/{model_id}/actions/tags", data={"csrf": csrf, "add": "production"}).status_code == 303
    assert ui.http.post(f"/models/{model_id}/actions/publish", data={"csrf": csrf}).status_code == 303
    model = ui.call("models.get_by_id", {"model": model_id})["model"]
    assert model["tags"] == ["production"] and model["ready"] is True
    table = ui.http.get("/models?tag=production&published=yes").text
    assert "pets-model" in table
    assert "pets-model" not in ui.http.get("/models?published=no").text
    assert ui.http.post(f"/models/{model_id}/actions/publish", data={}).status_code == 403


def test_hidden_projects_are_listed_on_request(ui):
    ui.call("projects.create", {"name": "loop/.datasets/pets", "system_tags": ["hidden"]})
    ui.sign_in()
    assert ".datasets/pets" not in ui.http.get("/projects").text
    assert "loop/.datasets/pets" in ui.http.get("/projects?hidden=1").text


def test_datasets_and_pipelines_list_their_versions_and_runs_with_the_latest(ui):
    datasets = ui.call("projects.create", {"name": "loop/.datasets/pets", "system_tags": ["hidden"]})["id"]
    for version in ("1.0.0", "1.0.1"):
        task = ui.call("tasks.create", {"name": "pets", "project": datasets, "type": "data_processing"})["id"]
        ui.call("tasks.edit", {"task": task, "runtime": {"version": version}})
    pipelines = ui.call("projects.create", {"name": "loop/.pipelines/retrain", "system_tags": ["hidden"]})["id"]
    ui.call("tasks.create", {"name": "retrain", "project": pipelines, "type": "controller"})  # the template
    runs = []
    for _ in range(3):
        runs.append(ui.call("tasks.create", {"name": "retrain", "project": pipelines, "type": "controller"})["id"])
        ui.call("tasks.started", {"task": runs[-1]})  # a run: enqueued or started, unlike the draft
        ui.call("tasks.create", {"name": "train", "project": pipelines, "type": "training"})  # a step, not a run
    ui.call("tasks.create", {"name": "retrain (Clone)", "project": pipelines, "type": "controller"})  # a new draft
    ui.sign_in()
    row = ui.http.get("/datasets").text.split('id="datasets"')[1].split("<tbody>")[1].split("</tr>")[0]
    assert "<td>2</td>" in row and ">1.0.1</a>" in row
    row = ui.http.get("/pipelines").text.split('id="pipelines"')[1].split("<tbody>")[1].split("</tr>")[0]
    assert "<td>3</td>" in row and f"/experiments/{runs[-1]}" in row
    assert '<span class="muted">2</span>' in row  # the drafts, apart from the runs


def test_a_pipelines_page_lists_its_drafts_apart_from_its_runs(ui):
    """The template a pipeline's runs are cloned from (a controller never enqueued: status created) is no run."""
    pipelines = ui.call("projects.create", {"name": "loop/.pipelines/retrain", "system_tags": ["hidden"]})["id"]
    draft = ui.call("tasks.create", {"name": "template", "project": pipelines, "type": "controller"})["id"]
    run = ui.call("tasks.create", {"name": "a run", "project": pipelines, "type": "controller"})["id"]
    ui.call("tasks.enqueue", {"task": run, "queue": ui.call("queues.create", {"name": "services"})["id"]})
    ui.sign_in()
    page = ui.http.get(f"/pipelines/{pipelines}").text
    runs, drafts = page.split('id="runs"')[1].split("</table>")[0], page.split('id="drafts"')[1].split("</table>")[0]
    assert f'data-task="{run}"' in runs and f'data-task="{draft}"' not in runs
    assert f'data-task="{draft}"' in drafts and f'data-task="{run}"' not in drafts


def test_pages_refuse_to_be_framed_and_to_run_inline_or_foreign_script(ui):
    response = ui.http.get("/login")
    assert response.headers["x-frame-options"] == "DENY"
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy["frame-ancestors"] == "'none'" and policy["script-src"] == "'self' 'unsafe-eval'"  # no inline
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
    ui.sign_in()
    error_page = "/projects/*/tasks/no-such-task/execution"
    for path in ("/projects", f"/projects/*/tasks/{make_task(ui)}/execution", "/models", "/loop", error_page):
        page = ui.http.get(path).text
        assert re.findall(r"<script(?![^>]*\b(?:src|type=\"application/json\"))[^>]*>", page) == [], path
        assert "javascript:" not in page and not re.search(r"\son[a-z]+=", page), path  # the policy refuses them


def test_the_loop_page_is_an_extension_the_server_does_not_have_by_itself(tmp_path):
    """The web UI names nothing of the loop: without `loop.webpage`, no /loop page and no link to it."""
    server = LocalServer(tmp_path / "bare")
    bare = UIClient(server, extensions=())
    try:
        bare.sign_in()
        assert bare.http.get("/loop").status_code == 404
        assert 'href="/loop"' not in bare.http.get("/projects").text
    finally:
        bare.http.close()
        server.close()


def test_web_extensions_are_named_module_colon_attribute_with_a_clear_error(ui):
    assert load_extension(webpage.SPEC) is webpage.extension
    for spec, message in (
        ("loop.webpage", "module:attribute"),
        ("loop.webpage:nothing", "is not a localserver.webui.WebExtension"),
        ("loop.webpage:MAX_VERSIONS", "is not a localserver.webui.WebExtension"),
    ):
        with pytest.raises(ValueError, match=message):
            load_extension(spec)
    with pytest.raises(ImportError):
        load_extension("no_such_module:extension")
    ui.sign_in()
    assert 'href="/loop"' in ui.http.get("/projects").text
