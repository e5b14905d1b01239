"""Users and their key pairs: the ``users`` CLI, password hashes, the ``auth.*_credentials`` and ``users.*``
endpoints over HTTP, revocation and removal ending tokens at once, and ownership of what each user creates."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys

import jsonschema
import pytest
import requests

from localserver import EmbeddedServer
from localserver.users import ADMIN_ID, password_matches

PASSWORD = "correct horse battery"


def users_cli(data_dir, *args, password: str | None = PASSWORD, stdin=subprocess.DEVNULL, **options):
    env = {k: v for k, v in os.environ.items() if k != "LOCALSERVER_PASSWORD"}
    if password is not None:
        env["LOCALSERVER_PASSWORD"] = password
    command = [sys.executable, "-m", "localserver", "users", *args, "--data-dir", str(data_dir)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, stdin=stdin, **options)


def rows(data_dir, sql: str) -> list[tuple]:
    with sqlite3.connect(data_dir / "localserver.sqlite") as conn:
        return conn.execute(sql).fetchall()


def basic_login(server, access_key: str, secret_key: str) -> requests.Response:
    return requests.get(f"{server.api_url}/auth.login", auth=(access_key, secret_key), timeout=10)


def token_of(server, access_key: str, secret_key: str) -> str:
    response = basic_login(server, access_key, secret_key)
    assert response.status_code == 200, response.text
    return response.json()["data"]["token"]


def call(server, endpoint: str, token: str, **body) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.post(f"{server.api_url}/{endpoint}", json=body, headers=headers, timeout=10)


def data(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_the_cli_adds_lists_sets_passwords_and_removes_users_with_hashes_never_in_clear(tmp_path):
    data_dir = tmp_path / "data"
    added = users_cli(data_dir, "add", "alice")
    assert added.returncode == 0 and "added alice" in added.stdout, added.stderr
    assert "already a user" in users_cli(data_dir, "add", "ALICE").stderr  # names are unique ignoring case
    listed = users_cli(data_dir, "list").stdout
    assert [line.split("\t")[:2] for line in listed.splitlines()] == [["admin", "admin"], ["alice", "user"]]

    (stored,) = rows(data_dir, "SELECT password_hash FROM users WHERE name = 'alice'")[0]
    assert stored.startswith("scrypt$16384$8$5$") and PASSWORD not in stored
    assert password_matches(stored, PASSWORD) and not password_matches(stored, PASSWORD + "!")
    database = (data_dir / "localserver.sqlite").read_bytes()
    assert PASSWORD.encode() not in database
    assert stat.S_IMODE((data_dir / "localserver.sqlite").stat().st_mode) == 0o600

    password_file = tmp_path / "password"
    password_file.write_text("a new password from a file\n")  # the file's final newline is not part of it
    changed = users_cli(data_dir, "passwd", "alice", "--password-file", str(password_file), password=None)
    assert changed.returncode == 0, changed.stderr
    (stored_again,) = rows(data_dir, "SELECT password_hash FROM users WHERE name = 'alice'")[0]
    assert password_matches(stored_again, "a new password from a file") and stored_again != stored

    assert users_cli(data_dir, "remove", "alice").returncode == 0
    assert [line.split("\t")[0] for line in users_cli(data_dir, "list").stdout.splitlines()] == ["admin"]
    assert rows(data_dir, "SELECT name, password_hash, removed IS NOT NULL FROM users WHERE name = 'alice'") == [
        ("alice", None, 1)
    ]
    assert users_cli(data_dir, "add", "alice").returncode == 0  # the name is free again, with a new id
    assert len(rows(data_dir, "SELECT id FROM users WHERE name = 'alice'")) == 2


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (("add", "bob"), None, "no password: give --password-file or LOCALSERVER_PASSWORD"),
        (("add", "bob"), "short", "8 to 1024 characters"),
        (("add", "bob"), "tab\tinside it", "no control characters"),
        (("add", "<script>"), PASSWORD, "A user name has 1 to 64 characters"),
        (("add", ".hidden"), PASSWORD, "A user name has"),
        (("add", "a/b"), PASSWORD, "A user name has"),
        (("add", "x" * 65), PASSWORD, "A user name has"),
        (("passwd", "nobody"), PASSWORD, "No user named 'nobody'"),
        (("remove", "nobody"), PASSWORD, "No user named 'nobody'"),
        (("remove", "admin"), PASSWORD, "The administrator cannot be removed"),
    ],
)
def test_the_cli_refuses_bad_names_and_passwords_and_changes_nothing(tmp_path, args, password, message):
    data_dir = tmp_path / "data"
    users_cli(data_dir, "list")
    before = rows(data_dir, "SELECT * FROM users")
    refused = users_cli(data_dir, *args, password=password)
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    assert rows(data_dir, "SELECT * FROM users") == before


@pytest.fixture
def server(tmp_path):
    with EmbeddedServer(tmp_path / "server") as running:
        yield running


def add_user(server, name: str) -> dict:
    assert users_cli(server.data_dir, "add", name).returncode == 0
    return {u["name"]: u for u in server_users(server)}[name]


def server_users(server) -> list[dict]:
    admin = token_of(server, server.access_key, server.secret_key)
    return data(call(server, "users.get_all", admin))["users"]


def first_pair(server, user_id: str) -> dict:
    """A user's first key pair, as the Settings page creates it (tests/webui covers the page itself)."""
    from localserver import users

    with server._server.store.transaction() as store:
        return users.create_credentials(store, user_id, "first")


def test_each_user_has_their_own_key_pairs_tokens_and_owned_entities(server):
    alice, bob = add_user(server, "alice"), add_user(server, "bob")
    alice_pair = first_pair(server, alice["id"])
    alice_token = token_of(server, alice_pair["access_key"], alice_pair["secret_key"])
    bob_pair = first_pair(server, bob["id"])
    bob_token = token_of(server, bob_pair["access_key"], bob_pair["secret_key"])

    check_shapes(server, alice_token)
    me = data(call(server, "users.get_current_user", alice_token))["user"]
    assert (me["id"], me["name"], me["role"]) == (alice["id"], "alice", "user") and "password_hash" not in me
    created = data(call(server, "auth.create_credentials", alice_token, label="laptop"))["credentials"]
    assert created["label"] == "laptop" and len(created["secret_key"]) >= 40
    listed = data(call(server, "auth.get_credentials", alice_token))["credentials"]
    assert sorted(pair["label"] for pair in listed) == ["first", "laptop"]
    assert all("secret_key" not in pair for pair in listed)
    assert data(call(server, "auth.get_credentials", bob_token))["credentials"][0]["label"] == "first"
    assert data(call(server, "auth.edit_credentials", alice_token, access_key=created["access_key"], label="pc"))
    with_new_pair = token_of(server, created["access_key"], created["secret_key"])

    task = data(call(server, "tasks.create", with_new_pair, name="mine", type="training"))["id"]
    queue = data(call(server, "queues.create", alice_token, name="alice-queue"))["id"]
    project = data(call(server, "projects.create", alice_token, name="alice-project"))["id"]
    model = data(call(server, "models.create", alice_token, name="m", uri="http://example.com/m.pt"))["id"]
    assert data(call(server, "tasks.get_by_id", bob_token, task=task))["task"]["user"] == alice["id"]
    assert data(call(server, "queues.get_by_id", bob_token, queue=queue))["queue"]["user"] == alice["id"]
    assert data(call(server, "projects.get_by_id", bob_token, project=project))["project"]["user"] == alice["id"]
    assert data(call(server, "models.get_by_id", bob_token, model=model))["model"]["user"] == alice["id"]
    mine = data(call(server, "tasks.get_all", bob_token, user=[alice["id"]], only_fields=["id"]))["tasks"]
    assert [t["id"] for t in mine] == [task]
    cloned = data(call(server, "tasks.clone", bob_token, task=task))["id"]
    assert data(call(server, "tasks.get_by_id", bob_token, task=cloned))["task"]["user"] == bob["id"]

    # Bob cannot revoke (or relabel) Alice's pair: answered as an unknown key, and it keeps working.
    for endpoint in ("auth.revoke_credentials", "auth.edit_credentials"):
        refused = call(server, endpoint, bob_token, access_key=created["access_key"], label="x")
        assert refused.status_code == 400 and "No key pair of yours" in refused.json()["meta"]["result_msg"]
    refused = call(server, "auth.revoke_credentials", bob_token, access_key=server.access_key)
    assert refused.status_code == 400 and "server's own keys" in refused.json()["meta"]["result_msg"]
    assert call(server, "tasks.get_all", with_new_pair).status_code == 200

    assert data(call(server, "auth.revoke_credentials", alice_token, access_key=created["access_key"])) == {
        "revoked": 1
    }
    revoked = call(server, "tasks.get_all", with_new_pair)  # the token of the revoked pair: at once
    assert revoked.status_code == 401 and "revoked" in revoked.json()["meta"]["result_msg"]
    assert basic_login(server, created["access_key"], created["secret_key"]).status_code == 401
    assert call(server, "tasks.get_all", alice_token).status_code == 200  # her other pair still works

    names = {u["name"]: u for u in server_users(server)}
    assert set(names) == {"admin", "alice", "bob"} and names["admin"]["id"] == ADMIN_ID


def check_shapes(server, token: str) -> None:
    """Each auth.*_credentials answer validates against the SDK's response schema for it. (The SDK's own
    request classes for them fail its client-side validation, which adds a "method" field their schemas forbid;
    the web UI calls them as plain JSON, as these tests do.)"""
    from clearml.backend_api.services.v2_23 import auth

    created = data(call(server, "auth.create_credentials", token, label="shape"))
    jsonschema.validate(created, auth.CreateCredentialsResponse._schema)
    access_key = created["credentials"]["access_key"]
    jsonschema.validate(data(call(server, "auth.get_credentials", token)), auth.GetCredentialsResponse._schema)
    edited = data(call(server, "auth.edit_credentials", token, access_key=access_key, label="renamed"))
    jsonschema.validate(edited, auth.EditCredentialsResponse._schema)
    revoked = data(call(server, "auth.revoke_credentials", token, access_key=access_key))
    jsonschema.validate(revoked, auth.RevokeCredentialsResponse._schema)
    assert revoked == {"revoked": 1}


def test_a_removed_users_tokens_stop_at_once_and_their_entities_keep_their_name(server):
    alice = add_user(server, "alice")
    pair = first_pair(server, alice["id"])
    token = token_of(server, pair["access_key"], pair["secret_key"])
    task = data(call(server, "tasks.create", token, name="before removal", type="training"))["id"]

    assert users_cli(server.data_dir, "remove", "alice").returncode == 0  # another process, the server running
    refused = call(server, "tasks.get_all", token)
    assert refused.status_code == 401 and refused.json()["meta"]["result_subcode"] == 30
    assert basic_login(server, pair["access_key"], pair["secret_key"]).status_code == 401
    admin = token_of(server, server.access_key, server.secret_key)
    assert data(call(server, "tasks.get_by_id", admin, task=task))["task"]["user"] == alice["id"]
    removed = {u["id"]: u for u in server_users(server)}[alice["id"]]
    assert removed["name"] == "alice" and removed["removed"]


def test_guesses_at_a_users_secret_are_throttled_per_address(server):
    pair = first_pair(server, add_user(server, "alice")["id"])
    statuses = [basic_login(server, pair["access_key"], f"guess-{n}").status_code for n in range(21)]
    assert statuses == [401] * 20 + [429]
    assert basic_login(server, pair["access_key"], pair["secret_key"]).status_code == 429  # until it refills


def test_labels_are_bounded_and_a_user_has_at_most_fifty_pairs(server):
    from localserver import users

    alice = add_user(server, "alice")
    pair = first_pair(server, alice["id"])
    token = token_of(server, pair["access_key"], pair["secret_key"])
    too_long = call(server, "auth.create_credentials", token, label="x" * 201)
    assert too_long.status_code == 400 and "at most 200 characters" in too_long.json()["meta"]["result_msg"]
    not_text = call(server, "auth.create_credentials", token, label={"a": 1})
    assert not_text.status_code == 400
    for _ in range(users.MAX_CREDENTIALS_PER_USER - 1):
        data(call(server, "auth.create_credentials", token))
    over = call(server, "auth.create_credentials", token)
    assert over.status_code == 400 and "at most 50 key pairs" in over.json()["meta"]["result_msg"]
    assert len(data(call(server, "auth.get_credentials", token))["credentials"]) == 50
