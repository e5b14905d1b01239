"""JSON for the store and the API: request bodies parsed with integers bounded to 64 bits (what MongoDB, the real
server's store, can hold), stored documents read back with orjson (several times faster than the standard
library, and exact for everything the bounded parser lets in), with the standard library for what orjson
refuses: NaN and Infinity, which the SDK sends for diverged metrics."""

from __future__ import annotations

import json

import orjson

from .errors import bad_request

INT64_MIN, INT64_MAX = -(2**63), 2**64 - 1  # signed and unsigned 64-bit integers


def bounded_int(text: str) -> int:
    """``int(text)``, refused with a 400 beyond 64 bits."""
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise bad_request(f"Integer out of range (more than 64 bits): {text[:40]}")
    return value


def parse(text: str):
    """A client's JSON (raises json.JSONDecodeError, or the 400 ApiError for an integer beyond 64 bits)."""
    return json.loads(text, parse_int=bounded_int)


def loads(data: str | bytes):
    """A stored document (written by ``json.dumps`` from a parsed request)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
