"""The web UI with users: sign-in by name and password (throttled per address and per account), sessions that
end on removal, a new password or a revoked key pair, Settings → Workspace, and owners on every list."""

from __future__ import annotations

import html
import re

from markupsafe import escape
from starlette.applications import Starlette
from starlette.testclient import TestClient
from webui_testing import UIClient

from localserver import LocalServer, users
from localserver.limits import Limits
from localserver.webui import routes
from loop import webpage

PASSWORD = "a long enough password"
SECRET = re.compile(r'<code id="new-secret-key">([^<]+)</code>')
ACCESS = re.compile(r'<code id="new-access-key">([^<]+)</code>')


def add_user(ui: UIClient, name: str, password: str = PASSWORD) -> dict:
    with ui.server.store.transaction() as store:
        return users.add_user(store, name, password)


def client_from(ui: UIClient, address: str) -> TestClient:
    app = Starlette(routes=routes(ui.server, (webpage.extension,)))
    return TestClient(app, follow_redirects=False, client=(address, 40000))


def test_a_user_signs_in_with_name_and_password_and_the_header_names_them(ui):
    add_user(ui, "alice")
    wrong = ui.http.post("/login", data={"name": "alice", "password": PASSWORD + "x"})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    assert "set-cookie" not in wrong.headers
    unknown = ui.http.post("/login", data={"name": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401 and "Wrong user name or password" in unknown.text
    ui.sign_in_as("ALICE", PASSWORD)  # names ignore case, as the CLI's uniqueness does
    page = ui.http.get("/projects").text
    assert '<a href="/settings/workspace" class="user" id="signed-in-user" title="Settings">alice</a>' in page


def test_sign_in_guesses_are_throttled_per_account_whatever_the_address(tmp_path):
    # 3 a minute: the budget refills by 0.05 per second, far less than the guesses' own time can give back.
    ui = UIClient(LocalServer(tmp_path / "server", limits=Limits(login_failures_per_minute=3)))
    add_user(ui, "alice")
    for n in range(3):  # each guess from another address: no address's own budget runs out
        guess = client_from(ui, f"10.0.0.{n}").post("/login", data={"name": "alice", "password": "guess"})
        assert guess.status_code == 401
    fresh = client_from(ui, "10.9.9.9")
    throttled = fresh.post("/login", data={"name": "alice", "password": PASSWORD})
    assert throttled.status_code == 429 and "set-cookie" not in throttled.headers
    keys = {"access_key": ui.server.access_key, "secret_key": ui.server.secret_key}
    assert fresh.post("/login", data=keys).status_code == 303  # the address itself is not throttled
    ui.server.close()


def test_removal_and_a_new_password_end_a_users_sessions_at_once(ui):
    add_user(ui, "alice")
    add_user(ui, "bob")
    ui.sign_in_as("alice", PASSWORD)
    other = client_from(ui, "10.1.1.1")
    assert other.post("/login", data={"name": "bob", "password": PASSWORD}).status_code == 303
    with ui.server.store.transaction() as store:
        users.set_password(store, "alice", "another password")
        users.remove_user(store, "bob")
    assert ui.http.get("/projects").status_code == 303
    assert other.get("/projects").status_code == 303
    ui.sign_in_as("alice", "another password")
    assert ui.http.get("/projects").status_code == 200
    refused = other.post("/login", data={"name": "bob", "password": PASSWORD})
    assert refused.status_code == 401


def test_settings_workspace_shows_a_new_secret_once_with_a_clearml_conf_and_revokes(ui):
    alice = add_user(ui, "alice")
    csrf = ui.sign_in_as("alice", PASSWORD)
    label = "<script>alert('label')</script>"
    created = ui.http.post("/settings/workspace/create", data={"csrf": csrf, "label": label})
    assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
    access_key, secret_key = ACCESS.search(created.text).group(1), SECRET.search(created.text).group(1)
    assert ui.server.auth.check_pair(access_key, secret_key) == (alice["id"], access_key)
    config = html.unescape(re.search(r'<pre id="new-config">(.*?)</pre>', created.text, re.S).group(1))
    assert f'access_key: "{access_key}"' in config and f'secret_key: "{secret_key}"' in config
    assert f'api_server: "{ui.server.api_url}"' in config
    assert "<script>alert" not in created.text and str(escape(label)) in created.text

    listed = ui.http.get("/settings/workspace").text
    assert access_key in listed and secret_key not in listed  # shown once only
    assert ui.http.post("/settings/workspace/create", data={"label": "no csrf"}).status_code == 403

    # A session signed in with the pair ends when the pair is revoked.
    by_key = client_from(ui, "10.2.2.2")
    assert by_key.post("/login", data={"access_key": access_key, "secret_key": secret_key}).status_code == 303
    assert "alice" in by_key.get("/settings/workspace").text
    revoked = ui.http.post("/settings/workspace/revoke", data={"csrf": csrf, "access_key": access_key})
    assert revoked.status_code == 303
    assert access_key not in ui.http.get("/settings/workspace").text
    assert by_key.get("/projects").status_code == 303
    assert ui.http.get("/projects").status_code == 200  # the password session goes on


def test_a_user_sees_and_revokes_only_their_own_pairs(ui):
    alice, bob = add_user(ui, "alice"), add_user(ui, "bob")
    with ui.server.store.transaction() as store:
        bobs = users.create_credentials(store, bob["id"], "bob's laptop")
    csrf = ui.sign_in_as("alice", PASSWORD)
    assert bobs["access_key"] not in ui.http.get("/settings/workspace").text
    refused = ui.http.post("/settings/workspace/revoke", data={"csrf": csrf, "access_key": bobs["access_key"]})
    assert refused.status_code == 400 and "No key pair of yours" in refused.text
    assert ui.server.auth.check_pair(bobs["access_key"], bobs["secret_key"])[0] == bob["id"]
    assert alice["id"] != bob["id"]


def test_every_list_shows_the_owner_and_the_tasks_table_filters_my_tasks(ui):
    alice, bob = add_user(ui, "alice"), add_user(ui, "bob")
    mine = ui.call("tasks.create", {"name": "alice's run", "type": "training"}, user=alice["id"])["id"]
    ui.call("tasks.create", {"name": "bob's run", "type": "training"}, user=bob["id"])
    model = ui.call("models.create", {"name": "alice's model", "uri": "http://example.com/m"}, user=alice["id"])["id"]
    ui.sign_in_as("alice", PASSWORD)

    table = ui.http.get("/projects/*/tasks").text
    owners = dict(re.findall(r">([a-z]+'s run)</a>.*?<td class=\"owner\">([^<]*)</td>", html.unescape(table), re.S))
    assert owners == {"alice's run": "alice", "bob's run": "bob"}
    assert re.search(f'href="\\?owner={alice["id"]}[^"]*" id="my-tasks"', table)
    only_mine = html.unescape(ui.http.get(f"/projects/*/tasks?owner={alice['id']}").text)
    assert "alice's run" in only_mine and "bob's run" not in only_mine
    assert ui.http.get("/projects/*/tasks?owner=nobody").status_code == 400

    info = ui.http.get(f"/projects/*/tasks/{mine}/info-output").text
    assert re.search(r'<td id="owner">alice <span class="muted">' + alice["id"], info)
    assert '<td class="owner">alice</td>' in ui.http.get("/models").text
    assert '<td id="owner">alice</td>' in ui.http.get(f"/models/{model}").text
