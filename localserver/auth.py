"""Credentials and signed tokens: ``auth.login`` (HTTP Basic) issues an HS256 JWT checked on every other call."""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
import time

import jwt

from .errors import unauthorized
from .store import Store

API_VERSION = "2.31"
DEFAULT_EXPIRATION_SEC = 30 * 24 * 3600
USER_ID = "local-user"


def load_or_create_credentials(store: Store, access_key: str | None, secret_key: str | None) -> tuple[str, str]:
    """Keys given explicitly win; otherwise the data dir's stored keys, generated on first start."""
    with store.transaction():
        if access_key and secret_key:
            store.set_setting("access_key", access_key)
            store.set_setting("secret_key", secret_key)
        if not store.setting("access_key"):
            store.set_setting("access_key", secrets.token_hex(10).upper())
            store.set_setting("secret_key", secrets.token_urlsafe(32))
        return store.setting("access_key"), store.setting("secret_key")


class TokenAuthority:
    def __init__(self, store: Store, access_key: str, secret_key: str, server_version: str):
        self.access_key = access_key
        self.secret_key = secret_key
        self._server_version = server_version
        with store.transaction():
            # Persisted so tokens issued before a restart stay valid.
            if not store.setting("jwt_secret"):
                store.set_setting("jwt_secret", secrets.token_hex(32))
            self._signing_key = store.setting("jwt_secret")

    def login(self, authorization: str | None, expiration_sec=None) -> str:
        access_key, secret_key = _basic_credentials(authorization)
        valid_access = hmac.compare_digest(access_key.encode(), self.access_key.encode())
        valid_secret = hmac.compare_digest(secret_key.encode(), self.secret_key.encode())
        if not (valid_access and valid_secret):
            raise unauthorized("Invalid access key or secret key", subcode=21)
        try:
            lifetime = int(expiration_sec) if expiration_sec else DEFAULT_EXPIRATION_SEC
        except (TypeError, ValueError):
            lifetime = DEFAULT_EXPIRATION_SEC
        now = time.time()
        issued = int(now)
        claims = {
            "identity": {
                "user": USER_ID,
                "company": "",
                "role": "admin",
                "user_name": "Local User",
                "company_name": "localserver",
            },
            "api_version": API_VERSION,
            "server_version": self._server_version,
            "server_build": "localserver",
            "feature_set": "basic",
            "env": "local",
            "iat": issued,
            "exp": math.ceil(now + max(lifetime, 1)),  # valid for at least the requested time
        }
        return jwt.encode(claims, self._signing_key, algorithm="HS256")

    def verify(self, authorization: str | None) -> str:
        """The user id of a valid ``Bearer`` token; raises 401 otherwise."""
        if not authorization or not authorization.startswith("Bearer "):
            raise unauthorized("Missing authorization token", subcode=30)
        try:
            claims = jwt.decode(authorization[7:].strip(), self._signing_key, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            raise unauthorized("Token expired", subcode=31) from None
        except jwt.InvalidTokenError:
            raise unauthorized("Invalid token", subcode=30) from None
        return claims.get("identity", {}).get("user", USER_ID)


def _basic_credentials(authorization: str | None) -> tuple[str, str]:
    if not authorization or not authorization.startswith("Basic "):
        raise unauthorized("Missing credentials (HTTP Basic access_key:secret_key)", subcode=20)
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized("Malformed credentials", subcode=20) from None
    access_key, _, secret_key = decoded.partition(":")
    return access_key, secret_key
