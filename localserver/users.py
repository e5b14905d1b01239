"""The server's users: names, password hashes and API key pairs (``python -m localserver users``, the web UI's
sign-in and Settings page, and the ``auth.*_credentials`` endpoints all go through here).

The administrator (:data:`ADMIN_ID`) is who the server's own keys sign in as; ``users add`` creates the others.
Passwords are hashed with scrypt (:func:`hashlib.scrypt`) at OWASP's "N=2^14, r=8, p=5" (16 MiB, about 0.2 s
on one core), a 16-byte salt and a 32-byte key; the parameters are stored with each hash, so stronger ones can
come later without breaking old hashes. API secrets are 256 random bits, which no guess reaches, so they are
kept as SHA-256: checked on every ``auth.login`` without a deliberate slowdown. Neither is ever stored in clear.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime, timezone

from .migrations import ADMIN_ID, ADMIN_NAME
from .store import Store

__all__ = ["ADMIN_ID", "ADMIN_NAME", "UserError"]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
MAX_LABEL_CHARS = 200
MAX_CREDENTIALS_PER_USER = 50
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 5
SCRYPT_MAXMEM = 64 << 20


class UserError(ValueError):
    """A refused user operation, with the reason for the person who asked."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# passwords
def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def password_matches(stored: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` hashes; a missing or malformed hash matches nothing (and
    costs the same time, so a wrong name cannot be told from a wrong password)."""
    try:
        scheme, n, r, p, salt, key = (stored or "").split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        expected = base64.b64decode(key)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        password_matches(_dummy_hash(), password)
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise UserError(f"A password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters.")
    if any(ord(char) < 32 or ord(char) == 127 for char in password):
        raise UserError("A password has no control characters (a stray newline from a file, for one).")
    return password


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UserError(
            "A user name has 1 to 64 characters: letters, digits and . _ @ - (starting with a letter or digit)."
        )
    return name


# users (run inside a store transaction or read)
def add_user(store: Store, name: str, password: str) -> dict:
    check_name(name)
    if store.active_user_named(name):
        raise UserError(f"There is already a user named {name!r}.")
    user = {
        "id": uuid.uuid4().hex,
        "name": name,
        "role": "user",
        "password_hash": hash_password(check_password(password)),
        "created": now(),
        "session_epoch": 0,
    }
    store.add_user(user)
    return user


def named(store: Store, name: str) -> dict:
    user = store.active_user_named(name)
    if user is None:
        raise UserError(f"No user named {name!r}.")
    return user


def set_password(store: Store, name: str, password: str) -> dict:
    """New password; every web UI session of the user ends (API key pairs stay valid)."""
    user = named(store, name)
    store.set_user_password(user["id"], hash_password(check_password(password)))
    return user


def remove_user(store: Store, name: str) -> dict:
    """The user can no longer sign in; their key pairs, tokens and sessions stop working at once. What they
    created stays theirs (the row stays, with their name)."""
    user = named(store, name)
    if user["id"] == ADMIN_ID:
        raise UserError("The administrator cannot be removed: they are who the server's own keys sign in as.")
    store.mark_user_removed(user["id"], now())
    return user


def sign_in(store: Store, name: str, password: str) -> dict | None:
    """The active user with this name and password, else ``None`` (same cost either way)."""
    user = store.active_user_named(name) if NAME.fullmatch(name or "") else None
    matches = password_matches(user and user["password_hash"], password or "")
    return user if user and matches else None


# API key pairs
def create_credentials(store: Store, user_id: str, label: str = "") -> dict:
    """A new key pair for ``user_id``: the only time its secret is seen (the store keeps its hash)."""
    label = check_label(label)
    if len(store.credentials_of(user_id)) >= MAX_CREDENTIALS_PER_USER:
        raise UserError(f"A user has at most {MAX_CREDENTIALS_PER_USER} key pairs; revoke one first.")
    access_key = secrets.token_hex(12).upper()
    secret_key = secrets.token_urlsafe(32)
    secret = secret_hash(secret_key)
    store.add_credential(
        {"access_key": access_key, "secret_hash": secret, "user": user_id, "label": label, "created": now()}
    )
    return {"access_key": access_key, "secret_key": secret_key, "label": label}


def check_label(label) -> str:
    label = "" if label is None else label
    if not isinstance(label, str) or len(label) > MAX_LABEL_CHARS:
        raise UserError(f"A key pair's label is text of at most {MAX_LABEL_CHARS} characters.")
    return label


def secret_hash(secret_key: str) -> str:
    return hashlib.sha256(secret_key.encode()).hexdigest()


def secret_matches(stored_hash: str, secret_key: str) -> bool:
    return hmac.compare_digest(secret_hash(secret_key), stored_hash)
