"""A user in a real browser (Debian's chromium, Playwright) on the web UI, with the real SDK and a real agent:
sign in, clone a task, edit General/epochs, enqueue it, watch it complete, read its scalars and confusion
matrix, compare, walk a dataset's lineage, open a pipeline run's DAG, and open every link the SDK printed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from common.waiting import wait_until
from devstack.processes import run_in_own_group
from localserver.webui.tasks import TABS as TASK_TABS

HERE = Path(__file__).parent
PIPELINE_SCRIPTS = HERE.parent / "localserver" / "scripts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
LINK = re.compile(r"ClearML (results|dataset|pipeline) page: (\S+)")
# Set to a folder to keep screenshots of the pages the tests visit (for reviewing the design).
SCREENSHOTS = os.environ.get("WEBUI_SCREENSHOTS")


def shot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def chromium() -> str:
    subprocess.run(["bash", str(HERE.parents[1] / "scripts" / "ensure-chromium.sh")], check=True)
    return CHROMIUM


@pytest.fixture
def browser_page(chromium, live_ui):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def sign_in(page, live_ui, path="/projects"):
    base = live_ui.base_url
    page.goto(base + path)
    assert page.url.startswith(f"{base}/login?next=")
    page.click("#key-sign-in summary")
    form = page.locator("#key-sign-in form")
    form.locator("input[name=access_key]").fill(live_ui.access_key)
    form.locator("input[name=secret_key]").fill(live_ui.secret_key)
    form.locator("button[type=submit]").click()
    page.wait_for_url(base + path)


def api():
    from clearml.backend_api.session.client import APIClient

    return APIClient()


def printed_links(task_id: str) -> list[str]:
    """The links the SDK printed into the task's console (as stored by the server)."""
    log = api().events.get_task_log(task=task_id, batch_size=5000).events
    return [match.group(2) for event in log for match in LINK.finditer(str(event.get("msg", "")))]


def register_script_task(project: str, name: str, script: Path, tmp_path: Path):
    from clearml import Task

    copy = tmp_path / script.name
    shutil.copy(script, copy)
    return Task.create(project_name=project, task_name=name, script=str(copy), packages=False)


@pytest.mark.browser
@pytest.mark.slow
def test_clone_edit_enqueue_watch_compare(clearml_server, live_ui, browser_page, start_agent, tmp_path):
    base = live_ui.base_url
    page = browser_page
    project = f"webui-{uuid.uuid4().hex[:6]}"
    queue = f"webui-{uuid.uuid4().hex[:6]}"
    template = register_script_task(project, "trainer", HERE / "scripts" / "trainer.py", tmp_path)
    template.set_parameters({"General/epochs": 2})
    agent = start_agent(queue, create_queue=True, poll_sec=0.5)
    # The pages run under a Content-Security-Policy with no inline script: plotly and ui.js must work within it.
    # Every violation, also those a library catches (plotly falls back to "WebGL is not supported" when its
    # shader compiler may not evaluate code), reaches the console through this listener.
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));"
    )
    refused = []
    page.on("console", lambda message: refused.append(message.text) if "CSP violation" in message.text else None)
    page.on("pageerror", lambda error: refused.append(str(error)))

    sign_in(page, live_ui)
    shot(page, "projects")
    page.get_by_role("link", name=project).click()
    expect(page.locator("#tasks")).to_contain_text("trainer")
    page.get_by_role("link", name="trainer", exact=True).click()
    page.locator("nav.tabs").get_by_role("link", name="Configuration").click()
    expect(page.locator("#p-General-epochs")).to_have_value("2")

    page.fill("#clone-form input[name=name]", "trainer three epochs")
    page.click("#clone-form button")
    expect(page.locator("h1")).to_have_text("trainer three epochs")
    clone_id = page.locator(".task-head").get_attribute("data-task")
    page.fill("#p-General-epochs", "3")
    page.click("#save-params")
    expect(page.locator("#p-General-epochs")).to_have_value("3")
    shot(page, "task-configuration-draft")
    wait_until(lambda: api().queues.get_all(name=f"^{queue}$"), 60, "the agent to create its queue")
    page.reload()
    page.select_option("#enqueue-form select[name=queue]", label=queue)
    page.click("#enqueue-form button")
    expect(page.locator("#task-status")).to_have_text(re.compile("queued|in_progress|completed"))
    expect(page.locator("#task-status")).to_have_text("completed", timeout=180_000)

    page.locator("nav.tabs").get_by_role("link", name="Console").click()
    expect(page.locator("#console")).to_contain_text("trained for 3 epochs")
    shot(page, "task-console")
    page.locator("nav.tabs").get_by_role("link", name="Scalars").click()
    chart = page.locator(".chart[data-metric=loss]")
    expect(chart.locator(".main-svg").first).to_be_visible()
    expect(chart).not_to_contain_text("WebGL is not supported")
    expect(chart).to_contain_text("train")
    expect(chart).to_contain_text("val")
    shot(page, "task-scalars")
    page.locator("nav.tabs").get_by_role("link", name="Plots").click()
    expect(page.locator("figure.plot figcaption")).to_contain_text("confusion / val")
    expect(page.locator("figure.plot .main-svg").first).to_be_visible()
    expect(page.locator("figure.plot")).to_contain_text("dog")
    shot(page, "task-plots")

    page.goto(f"{base}/compare?ids={template.id},{clone_id}")
    epochs_row = page.locator("#compare-params tr.differs", has_text="General/epochs")
    expect(epochs_row.locator("td")).to_have_text(["General/epochs ≠", "2", "3"])
    expect(page.locator(".chart[data-metric=loss] .main-svg").first).to_be_visible()
    shot(page, "compare")

    (results_link,) = {link for link in printed_links(clone_id) if "/tasks/" in link or "/experiments/" in link}
    page.goto(results_link)
    expect(page.locator("nav.tabs a.on")).to_have_text("Console")
    expect(page.locator("#console")).to_contain_text("epoch 3/3 done")

    page.goto(f"{base}/workers-and-queues")
    expect(page.locator("#workers")).to_contain_text(agent.worker_id)
    expect(page.locator(f"[id='queue-{queue}']")).to_contain_text("0 pending")
    shot(page, "workers-and-queues")
    page.goto(f"{base}/projects/{template.project}/tasks")
    shot(page, "tasks-table")
    assert refused == []


@pytest.mark.browser
@pytest.mark.slow
def test_dataset_lineage_pipeline_dag_and_every_printed_link(
    clearml_server, clearml_env, live_ui, browser_page, tmp_path
):
    from clearml import Dataset

    page = browser_page
    project = f"webui-{uuid.uuid4().hex[:6]}"
    versions = []
    for index, files in enumerate([["a.txt", "b.txt"], ["c.txt"]]):
        folder = tmp_path / f"v{index}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text(name * (index + 3))
        dataset = Dataset.create(
            dataset_name="pets", dataset_project=project, parent_datasets=[d.id for d in versions] or None
        )
        dataset.add_files(folder)
        dataset.upload()
        dataset.finalize()
        versions.append(dataset)
    register_script_task(project, "base-step", PIPELINE_SCRIPTS / "step.py", tmp_path)
    shutil.copy(PIPELINE_SCRIPTS / "pipeline.py", tmp_path / "pipeline.py")
    result = run_in_own_group(
        [sys.executable, str(tmp_path / "pipeline.py"), "local"],
        env={**os.environ, **clearml_env, "PIPELINE_PROJECT": project},
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    controller_id = result.stdout.split("controller ")[-1].split()[0]

    # Every link the SDK printed in this flow: the datasets' pages, the controller's pipeline and results pages.
    links = {f"dataset {d.id}": next(x for x in printed_links(d.id) if "/datasets/simple/" in x) for d in versions}
    for link in printed_links(controller_id) + [m.group(2) for m in LINK.finditer(result.stdout)]:
        links.setdefault("pipeline" if "/pipelines/" in link else f"results {link}", link)
    assert "pipeline" in links and any(k.startswith("results") for k in links), links
    assert all(link.startswith(clearml_server.web_url) for link in links.values()), links

    sign_in(page, live_ui, "/datasets")
    child_link = links[f"dataset {versions[1].id}"]
    page.goto(child_link)
    expect(page.locator("h1")).to_contain_text("pets")
    expect(page.locator("#parents")).to_contain_text(versions[0].id)
    expect(page.locator("#changes")).to_contain_text("c.txt")
    expect(page.locator("#changes")).not_to_contain_text("a.txt")
    graph = page.locator("svg.graph")
    expect(graph.locator(f"[data-node='{versions[0].id}']")).to_be_visible()
    expect(graph.locator(".edge")).to_have_count(1)
    graph.locator(f"[data-node='{versions[0].id}']").click()
    expect(page.locator("#parents")).to_contain_text("none")
    expect(page.locator("#changes")).to_contain_text("a.txt")
    page.goto(child_link)
    shot(page, "dataset-version")

    page.goto(links["pipeline"])
    dag = page.locator("#dag svg.graph")
    expect(dag.locator("[data-node='step-one']")).to_contain_text("completed")
    expect(dag.locator("[data-node='step-two']")).to_contain_text("completed")
    expect(dag.locator(".edge")).to_have_count(1)
    shot(page, "pipeline-run")
    dag.locator("[data-node='step-two']").click()
    expect(page.locator("h1")).to_have_text("step-two")

    page.goto(f"{live_ui.base_url}/loop?project={project}&dataset=pets")  # versions without a retrain pipeline
    expect(page.locator("#loop tbody tr")).to_have_count(2)
    expect(page.locator("#latest-feedback")).to_contain_text("no pipeline run yet")
    shot(page, "loop")
    page.goto(f"{live_ui.base_url}/pipelines")
    expect(page.locator("main")).to_contain_text(project)
    shot(page, "pipelines")

    for kind, link in links.items():
        response = page.goto(link)
        assert response.status == 200, (kind, link)
        assert "Not found" not in page.title()


@pytest.mark.browser
def test_signed_out_redirect_and_forged_csrf_are_refused(clearml_server, live_ui, browser_page):
    from clearml import Task

    base = live_ui.base_url
    page = browser_page
    draft = Task.create(project_name=f"webui-{uuid.uuid4().hex[:6]}", task_name="draft")
    page.goto(f"{base}/projects/*/tasks/{draft.id}/info-output")
    assert page.url == f"{base}/login?next=%2Fprojects%2F%2A%2Ftasks%2F{draft.id}%2Finfo-output"
    sign_in(page, live_ui, f"/projects/*/tasks/{draft.id}/info-output")
    page.locator("#clone-form input[name=csrf]").evaluate("input => input.value = 'forged'")
    page.click("#clone-form button")
    expect(page.locator("#error-message")).to_contain_text("CSRF")
    assert len(api().tasks.get_all(parent=draft.id)) == 0
    page.click("#back")  # under the policy's script-src, from ui.js (a javascript: link would be refused)
    page.wait_for_url(f"{base}/projects/*/tasks/{draft.id}/info-output")


@pytest.mark.browser
def test_a_pending_task_is_moved_to_the_front_of_its_queue(clearml_server, live_ui, browser_page):
    page, client = browser_page, api()
    queue = f"order-{uuid.uuid4().hex[:6]}"
    queue_id = client.queues.create(name=queue).id
    tasks = [client.tasks.create(name=f"{queue} {name}", type="training").id for name in ("first", "second")]
    for task_id in tasks:
        client.tasks.enqueue(task=task_id, queue=queue_id)

    sign_in(page, live_ui, "/workers-and-queues")
    rows = page.locator(f"[id='queue-{queue}'] + table tbody tr")
    expect(rows.nth(0)).to_contain_text(f"{queue} first")
    expect(rows.nth(0).get_by_role("button", name="To the front")).to_be_disabled()
    shot(page, "queue-pending")
    rows.nth(1).get_by_role("button", name="To the front").click()
    expect(rows.nth(0)).to_contain_text(f"{queue} second")
    shot(page, "queue-reordered")
    assert [entry.task for entry in client.queues.get_by_id(queue=queue_id).entries] == tasks[::-1]


def users_cli(clearml_server, *args: str, password: str = "") -> None:
    env = {**os.environ, "LOCALSERVER_PASSWORD": password}
    command = [sys.executable, "-m", "localserver", "users", *args, "--data-dir", str(clearml_server.data_dir)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def raw_login(clearml_server, access_key: str, secret_key: str) -> requests.Response:
    return requests.get(f"{clearml_server.api_url}/auth.login", auth=(access_key, secret_key), timeout=10)


@pytest.mark.browser
@pytest.mark.slow
def test_a_user_added_by_the_cli_signs_in_creates_credentials_and_owns_what_they_run(
    clearml_server, live_ui, browser_page, start_agent, tmp_path
):
    base, page = live_ui.base_url, browser_page
    name, password = f"carol-{uuid.uuid4().hex[:6]}", "carol's long password"
    users_cli(clearml_server, "add", name, password=password)

    page.goto(f"{base}/projects")
    page.fill("#password-sign-in input[name=name]", name)
    page.fill("#password-sign-in input[name=password]", password)
    page.click("#password-sign-in button[type=submit]")
    page.wait_for_url(f"{base}/projects")
    expect(page.locator("#signed-in-user")).to_have_text(name)
    page.click("#signed-in-user")
    page.fill("#create-pair input[name=label]", "browser test")
    page.click("#create-pair button")
    expect(page.locator("#new-pair")).to_contain_text("shown only this once")
    access_key = page.locator("#new-access-key").inner_text()
    secret_key = page.locator("#new-secret-key").inner_text()
    config_file = tmp_path / "carol.conf"
    config_file.write_text(page.locator("#new-config").inner_text())
    shot(page, "settings-new-pair")

    # The SDK with nothing but that clearml.conf runs as the user; an agent with the server's keys runs
    # what the user enqueued, which stays theirs.
    project, queue = f"owned-{uuid.uuid4().hex[:6]}", f"owned-{uuid.uuid4().hex[:6]}"
    api().queues.create(name=queue)
    for script in ("owned_task.py", "agent_body.py"):
        shutil.copy(HERE / "scripts" / script, tmp_path / script)
    user_env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    user_env.update(CLEARML_CONFIG_FILE=str(config_file), CLEARML_TASK_NO_REUSE="1")
    result = run_in_own_group(
        [sys.executable, str(tmp_path / "owned_task.py"), project, queue], env=user_env, timeout=180, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-4000:]
    ids = dict(line.split()[:2] for line in result.stdout.splitlines() if line.startswith(("own ", "draft ")))
    admin_token = raw_login(clearml_server, clearml_server.access_key, clearml_server.secret_key).json()
    everyone = requests.post(
        f"{clearml_server.api_url}/users.get_all",
        json={"name": [name]},
        headers={"Authorization": f"Bearer {admin_token['data']['token']}"},
        timeout=10,
    ).json()["data"]["users"]
    (user_id,) = [user["id"] for user in everyone]
    assert api().tasks.get_by_id(task=ids["own"]).user == user_id
    start_agent(queue, poll_sec=0.5)

    def ran() -> bool:
        status = str(api().tasks.get_by_id(task=ids["draft"]).status)  # the SDK answers an enum
        assert status not in ("failed", "stopped"), status
        return status == "completed"

    wait_until(ran, 180, "the agent to run the user's task")
    assert api().tasks.get_by_id(task=ids["draft"]).user == user_id

    page.goto(f"{base}/projects/*/tasks")
    page.click("#my-tasks")
    rows = page.locator("#tasks tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.locator("td.owner")).to_have_text([name, name])
    expect(page.locator("#tasks")).to_contain_text("enqueued by a user")
    shot(page, "my-tasks")

    token = raw_login(clearml_server, access_key, secret_key).json()["data"]["token"]
    page.goto(f"{base}/settings/workspace")
    page.locator(f"tr[data-key='{access_key}'] button").click()
    expect(page.locator("#pairs")).not_to_contain_text(access_key)
    assert raw_login(clearml_server, access_key, secret_key).status_code == 401
    with_token = requests.post(
        f"{clearml_server.api_url}/tasks.get_all", json={}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert with_token.status_code == 401

    users_cli(clearml_server, "remove", name)
    page.goto(f"{base}/projects")
    assert page.url.startswith(f"{base}/login?next=")


# Markup and script in every field a client stores. The tripwires: a dialog (alert), a page error, and a CSP
# violation report (markup that reached the page as markup would try to run and be refused).
HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'><b onmouseover=alert(3)>"
HOSTILE_URLS = ("javascript:alert(4)", "data:text/html,<script>alert(5)</script>", " javascript:alert(6)")
# Every attribute that holds a URL must resolve to http(s); no element may carry an inline event handler; the
# only scripts without src are JSON data islands.
UNSAFE_MARKUP = """() => {
  const bad = [];
  for (const el of document.querySelectorAll("*")) {
    for (const attr of el.attributes) {
      if (attr.name.toLowerCase().startsWith("on")) bad.push(`${el.tagName} ${attr.name}`);
    }
    for (const name of ["href", "src", "xlink:href", "action", "formaction", "srcset", "poster", "data"]) {
      const value = el.getAttribute(name);
      if (value === null || (el.tagName === "LINK" && el.rel === "icon" && value === "data:,")) continue;
      let url;
      try { url = new URL(value, document.baseURI); } catch (e) { url = {protocol: "unparsable"}; }
      if (!["http:", "https:"].includes(url.protocol)) bad.push(`${el.tagName} ${name}=${value}`);
    }
  }
  for (const script of document.scripts) {
    if (!script.src && script.type !== "application/json") bad.push(`inline script ${script.textContent.slice(0, 80)}`);
  }
  return bad;
}"""


def store_hostile_values(tmp_path) -> dict:
    """A task, a model, a dataset version and a queue with HOSTILE in every client-stored field."""
    from clearml import Dataset, Task

    suffix = uuid.uuid4().hex[:6]
    project = f"hostile-{suffix} {HOSTILE}"
    task = Task.init(project_name=project, task_name=f"task {HOSTILE}", reuse_last_task_id=False)
    task.connect({f"param {HOSTILE}": HOSTILE}, name=f"section {HOSTILE}")
    task.set_comment(HOSTILE)
    task.add_tags([HOSTILE])
    logger = task.get_logger()
    logger.report_scalar(f"metric {HOSTILE}", f"variant {HOSTILE}", 1.0, iteration=0)
    logger.report_single_value(f"single {HOSTILE}", 2.0)
    logger.report_text(f"console {HOSTILE}")
    link = '<a href="javascript:alert(7)">plot link</a>'
    figure = {"data": [{"type": "bar", "x": [HOSTILE], "y": [1], "name": HOSTILE}], "layout": {"title": link + HOSTILE}}
    logger.report_plotly(f"plot {HOSTILE}", f"series {HOSTILE}", figure=figure, iteration=0)
    for index, url in enumerate(HOSTILE_URLS):
        logger.report_image(f"debug {HOSTILE}", f"sample {index}", iteration=0, url=url)
    logger.flush()
    client = api()
    client.tasks.add_or_update_artifacts(
        task=task.id,
        artifacts=[
            {"key": f"artifact {i} {HOSTILE}", "type": HOSTILE, "uri": url} for i, url in enumerate(HOSTILE_URLS)
        ],
        force=True,
    )
    model = client.models.create(
        name=f"model {HOSTILE}",
        uri=HOSTILE_URLS[0],
        comment=HOSTILE,
        labels={HOSTILE: 0},
        tags=[HOSTILE],
        task=task.id,
        project=task.project,
        framework=HOSTILE,
    ).id
    client.models.add_or_update_metadata(model=model, metadata=[{"key": HOSTILE, "value": HOSTILE, "type": HOSTILE}])
    task_id, project_id = task.id, task.project
    task.close()
    clone = client.tasks.clone(task=task_id, new_task_name=f"clone {HOSTILE}").id

    folder = tmp_path / "hostile-files"
    folder.mkdir()
    (folder / f"file {HOSTILE}.txt".replace("/", "")).write_text(HOSTILE)
    dataset = Dataset.create(dataset_name=f"dataset {HOSTILE}", dataset_project=project)
    dataset.add_files(folder)
    dataset.upload()
    dataset.finalize()
    client.queues.create(name=f"queue-{suffix} {HOSTILE}")
    return {"task": task_id, "clone": clone, "project": project_id, "model": model, "dataset": dataset.id}


@pytest.mark.browser
@pytest.mark.slow
def test_hostile_values_in_every_field_are_shown_as_text_on_every_page(clearml_server, live_ui, browser_page, tmp_path):
    stored = store_hostile_values(tmp_path)
    base, page = live_ui.base_url, browser_page
    tripped: list[str] = []
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));"
    )
    page.on("console", lambda message: tripped.append(message.text) if "CSP violation" in message.text else None)
    page.on("pageerror", lambda error: tripped.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: (tripped.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    sign_in(page, live_ui)
    page.goto(f"{base}/settings/workspace")
    page.fill("#create-pair input[name=label]", HOSTILE)
    page.click("#create-pair button")

    task_pages = [f"/projects/{stored['project']}/tasks/{stored['task']}/{tab}" for tab, _ in TASK_TABS]
    pages = [
        "/projects",
        f"/projects/{stored['project']}/tasks",
        *task_pages,
        f"/compare?ids={stored['task']},{stored['clone']}",
        "/models",
        f"/models/{stored['model']}",
        "/datasets",
        f"/datasets/simple/{dataset_project(stored['dataset'])}",
        f"/datasets/simple/{dataset_project(stored['dataset'])}/experiments/{stored['dataset']}",
        "/workers-and-queues",
        "/settings/workspace",
    ]
    links: set[str] = set()
    for path in pages:
        response = page.goto(base + path)
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        assert HOSTILE in page.locator("main").inner_text(), f"{path} does not show the stored value as text"
        assert page.evaluate(UNSAFE_MARKUP) == [], path
        hrefs = page.eval_on_selector_all(
            "main a[href]", "links => links.map(a => new URL(a.getAttribute('href'), document.baseURI).href)"
        )
        links.update(href for href in hrefs if href.startswith(base))
        shot(page, "hostile" + path.replace("/", "-").replace("?", "-"))
    for link in sorted(links):  # every link those pages show, followed (downloads fetched, not rendered)
        fetched = page.request.get(link)
        assert fetched.status < 500, link
        if fetched.headers.get("content-type", "").startswith("text/html"):
            page.goto(link)
            page.wait_for_load_state("networkidle")
            assert page.evaluate(UNSAFE_MARKUP) == [], link
    assert tripped == []


def dataset_project(dataset_id: str) -> str:
    return api().tasks.get_by_id(task=dataset_id).project
