"""Request bodies checked at the endpoint's edge: ``@shaped(Model)`` validates the body into a declared pydantic
model before the handler runs, and answers a mismatch with the envelope's 400 (subcode 12, the validation error
the ClearML clients know): ``Missing required field: <name>`` as :func:`localserver.api.require` says it, else
``Validation error: <field path>: <what is wrong>``.

Fields the clients send but this server does not read (``"method"`` on every SDK request, newer options) are
ignored, as the real server ignores them. Sub-documents the server stores as given (artifacts, hyperparameter and
configuration items) keep their unknown keys (:class:`Item`).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..errors import ApiError, missing_field

VALIDATION_SUBCODE = 12  # ClearML's "validation error"; missing_field() uses it too

MAX_ID = 256  # ids of tasks, models, projects, queues (ours are 32 hex digits)
MAX_NAME = 1024  # names, keys, tags, types, short references
MAX_TEXT = 1 << 20  # comments, status messages, URIs (the body limit bounds them too)
MAX_ITEMS = 10_000  # ids in one batch, tags, items in one edit


def _one_or_many(value):
    """A single id where a list is declared, as the clients sometimes send it."""
    return [value] if isinstance(value, str) else value


Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
Name = Annotated[str, Field(max_length=MAX_NAME)]
NonEmptyName = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Ids = Annotated[list[Id], BeforeValidator(_one_or_many), Field(max_length=MAX_ITEMS)]
Tags = Annotated[list[Name], Field(max_length=MAX_ITEMS)]
Names = Annotated[list[Name], BeforeValidator(_one_or_many), Field(max_length=MAX_ITEMS)]
Document = dict[str, Any]  # a sub-document stored as given (script, execution, hyperparams, runtime...)


class Shape(BaseModel):
    """A request body: unknown fields ignored; ``None`` is the same as absent (the handlers' defaults)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Item(BaseModel):
    """An element of a list the server stores: unknown keys kept (``stored()``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def stored(self) -> dict:
        """What the client sent, checked: the given keys only, unknown ones included."""
        return self.model_dump(exclude_unset=True)


def _path(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)


def _api_error(shape: type[Shape], exc: ValidationError, body: dict) -> ApiError:
    error = exc.errors(include_url=False)[0]
    loc = error["loc"]
    field = shape.model_fields.get(str(loc[0])) if len(loc) == 1 else None
    if field is not None and field.is_required() and body.get(loc[0]) in (None, ""):
        return missing_field(str(loc[0]))
    return ApiError(400, VALIDATION_SUBCODE, f"Validation error: {_path(loc)}: {error['msg']}")


def parse(shape: type[Shape], body: dict) -> Shape:
    try:
        return shape.model_validate(body)
    except ValidationError as exc:
        raise _api_error(shape, exc, body) from None


def shaped(shape: type[Shape]):
    """Decorate a handler ``(ctx, request: shape)``; the decorated one takes ``(ctx, body)`` (a dict, or a
    ``shape`` built by the caller) as every endpoint does."""

    def decorate(handler):
        @functools.wraps(handler)
        def with_body(ctx, body):
            return handler(ctx, body if isinstance(body, shape) else parse(shape, body))

        with_body.shape = shape
        return with_body

    return decorate
