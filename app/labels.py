"""Feedback labels: one normalised spelling per class, so `Rabbit` and `rabbit ` land in the same folder."""

from __future__ import annotations

import re

MAX_LABEL_LENGTH = 32
_LABEL = re.compile(r"[a-z0-9_-]+")


class InvalidLabel(ValueError):
    """The label cannot name a class; the message says why."""


def normalize_label(text: str | None) -> str:
    """Return the canonical form of `text` (trimmed, lowercase) or raise `InvalidLabel`."""
    label = (text or "").strip().lower()
    if not label:
        raise InvalidLabel("The label is empty: pick a class or type a new label.")
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidLabel(f"The label has {len(label)} characters; at most {MAX_LABEL_LENGTH} are allowed.")
    if not _LABEL.fullmatch(label):
        bad = sorted({char for char in label if not _LABEL.fullmatch(char)})
        shown = " ".join(repr(char) for char in bad)
        raise InvalidLabel(
            f"The label {label!r} contains {shown}; use only lowercase letters a-z, digits, '_' and '-'."
        )
    return label
