"""Credentials and signed tokens: ``auth.login`` (HTTP Basic) issues an HS256 JWT checked on every other call.

The server's own keys sign in as the administrator; the key pairs users create (:mod:`localserver.users`) as
their user. A token names the key pair it was issued for, and a user's token is valid only while that pair is:
revoking it, or removing the user, ends the token at its next request.

``auth.login`` guesses are throttled per client address only: no guess reaches a 256-bit secret, and a budget per
access key would let anyone who saw a key in a log (the agent prints it) stall every process that signs in
with it. The web UI's password sign-in is throttled per account as well (:mod:`localserver.webui`)."""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
import threading
import time

import jwt

from .errors import ApiError, bad_request, unauthorized
from .store import Store
from .users import ADMIN_ID, secret_matches

API_VERSION = "2.31"
DEFAULT_EXPIRATION_SEC = 30 * 24 * 3600
MAX_EXPIRATION_SEC = DEFAULT_EXPIRATION_SEC
WRONG_KEYS_SUBCODE = 21  # a guess, counted by LoginThrottle (missing or malformed credentials are not)


def load_or_create_credentials(store: Store, access_key: str | None, secret_key: str | None) -> tuple[str, str]:
    """Keys given explicitly win; otherwise the data dir's stored keys, generated on first start.
    New keys also replace the token signing secret: every token issued under the old keys stops working."""
    with store.transaction():
        stored = (store.setting("access_key"), store.setting("secret_key"))
        if access_key and secret_key and (access_key, secret_key) != stored:
            store.set_setting("access_key", access_key)
            store.set_setting("secret_key", secret_key)
            store.set_setting("jwt_secret", secrets.token_hex(32))
        if not store.setting("access_key"):
            store.set_setting("access_key", secrets.token_hex(10).upper())
            store.set_setting("secret_key", secrets.token_urlsafe(32))
            store.set_setting("jwt_secret", secrets.token_hex(32))
        return store.setting("access_key"), store.setting("secret_key")


class TokenAuthority:
    """Issues and checks tokens, signed with the data dir's secret (replaced whenever the keys change)."""

    def __init__(self, store: Store, access_key: str, secret_key: str, server_version: str):
        self._store = store
        self.access_key = access_key
        self.secret_key = secret_key
        self._server_version = server_version
        with store.transaction():
            # Persisted so tokens issued before a restart with the same keys stay valid.
            if not store.setting("jwt_secret"):
                store.set_setting("jwt_secret", secrets.token_hex(32))
            self._signing_key = store.setting("jwt_secret")

    def check_credentials(self, authorization: str | None) -> tuple[str, str]:
        """``(user id, access key)`` of HTTP Basic credentials: the server's keys or a user's key pair; else 401."""
        access_key, secret_key = _basic_credentials(authorization)
        return self.check_pair(access_key, secret_key)

    def check_pair(self, access_key: str, secret_key: str) -> tuple[str, str]:
        valid_access = hmac.compare_digest(access_key.encode(), self.access_key.encode())
        valid_secret = hmac.compare_digest(secret_key.encode(), self.secret_key.encode())
        if valid_access and valid_secret:
            return ADMIN_ID, access_key
        found = None if valid_access else self._store.active_credential(access_key)
        if found is None or not secret_matches(found[1], secret_key):
            raise unauthorized("Invalid access key or secret key", subcode=WRONG_KEYS_SUBCODE)
        return found[0], access_key

    def pair_active(self, user_id: str, access_key: str) -> bool:
        """Whether ``access_key`` (the server's, or a key pair of ``user_id``) still signs in."""
        if access_key == self.access_key:
            return user_id == ADMIN_ID
        found = self._store.active_credential(access_key)
        return found is not None and found[0] == user_id

    def issue(self, user: dict, access_key: str, expiration_sec=None) -> str:
        """A token for ``user`` (a users row) signed in with ``access_key``, valid for ``expiration_sec``
        (default 30 days, clamped to 30 days as the real server clamps)."""
        lifetime = token_lifetime(expiration_sec)
        now = time.time()
        claims = {
            "identity": {
                "user": user["id"],
                "company": "",
                "role": user["role"],
                "user_name": user["name"],
                "company_name": "localserver",
            },
            "key": access_key,
            "api_version": API_VERSION,
            "server_version": self._server_version,
            "server_build": "localserver",
            "feature_set": "basic",
            "env": "local",
            "iat": int(now),
            "exp": math.ceil(now + lifetime),  # valid for at least the requested time
        }
        return jwt.encode(claims, self._signing_key, algorithm="HS256")

    def verify(self, authorization: str | None) -> str:
        """The user id of a valid ``Bearer`` token whose key pair is still active; raises 401 otherwise."""
        if not authorization or not authorization.startswith("Bearer "):
            raise unauthorized("Missing authorization token", subcode=30)
        try:
            claims = jwt.decode(authorization[7:].strip(), self._signing_key, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            raise unauthorized("Token expired", subcode=31) from None
        except jwt.InvalidTokenError:
            raise unauthorized("Invalid token", subcode=30) from None
        identity = claims.get("identity")
        user_id = identity.get("user") if isinstance(identity, dict) else None
        access_key = claims.get("key", self.access_key)  # tokens from before users existed: the server's keys
        if not isinstance(user_id, str) or not isinstance(access_key, str) or not self.pair_active(user_id, access_key):
            raise unauthorized("Token revoked: its credentials were revoked or its user removed", subcode=30)
        return user_id


def token_lifetime(expiration_sec) -> float:
    """Seconds a new token lives: the default when not given, at most MAX_EXPIRATION_SEC."""
    if expiration_sec is None or expiration_sec == "":
        return DEFAULT_EXPIRATION_SEC
    try:
        if isinstance(expiration_sec, bool):
            raise ValueError
        lifetime = float(expiration_sec)
    except (TypeError, ValueError):
        raise bad_request(f"expiration_sec must be a number of seconds, got {expiration_sec!r}") from None
    if not math.isfinite(lifetime) or lifetime <= 0:
        raise bad_request(f"expiration_sec must be a positive finite number of seconds, got {expiration_sec!r}")
    return min(lifetime, MAX_EXPIRATION_SEC)


class LoginThrottled(ApiError):
    """Too many failed logins from one address: answered 429 with ``Retry-After`` (the SDK waits and retries)."""

    def __init__(self, retry_after: int):
        super().__init__(429, 0, f"Too many failed login attempts; retry in {retry_after} s")
        self.retry_after = retry_after


class LoginThrottle:
    """Failed ``auth.login`` attempts per client address: a bucket of ``per_minute`` that refills continuously.

    While an address's bucket is empty its logins are refused before the credentials are checked, so guessing
    cannot go faster than ``per_minute``; successful logins cost nothing.
    """

    MAX_ADDRESSES = 10_000

    def __init__(self, per_minute: int):
        self._capacity = float(per_minute)
        self._refill_per_sec = per_minute / 60
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (allowance, at monotonic time)
        self._lock = threading.Lock()

    def _allowance(self, address: str, now: float) -> float:
        allowance, since = self._buckets.get(address, (self._capacity, now))
        return min(self._capacity, allowance + (now - since) * self._refill_per_sec)

    def check(self, address: str) -> None:
        with self._lock:
            allowance = self._allowance(address, time.monotonic())
        if allowance < 1:
            raise LoginThrottled(math.ceil((1 - allowance) / self._refill_per_sec))

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= self.MAX_ADDRESSES:  # forget refilled addresses, else the oldest
                full = [a for a in self._buckets if self._allowance(a, now) >= self._capacity]
                for forgotten in full or [next(iter(self._buckets))]:
                    del self._buckets[forgotten]
            self._buckets[address] = (self._allowance(address, now) - 1, now)


def _basic_credentials(authorization: str | None) -> tuple[str, str]:
    if not authorization or not authorization.startswith("Basic "):
        raise unauthorized("Missing credentials (HTTP Basic access_key:secret_key)", subcode=20)
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized("Malformed credentials", subcode=20) from None
    access_key, _, secret_key = decoded.partition(":")
    return access_key, secret_key
