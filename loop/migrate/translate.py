"""How a value from the source reads on the target: source ids become their copies' ids, and URLs of the source's
files, web and API servers become the target's (a file's URL, a `output.destination`, a link in a comment).
Applied to every field the migration writes, and to the text of the files it rewrites (a dataset's state, which
names its parents)."""

from __future__ import annotations

import re

from .idmap import ID

TEXT_TYPES = ("application/json", "text/")
MAX_REWRITTEN_BYTES = 64 * 1024 * 1024  # larger files are copied byte for byte


class Translation:
    def __init__(self, targets: dict[str, str], prefixes: dict[str, str]):
        self.targets = targets  # shared with the id map: new copies are seen at once
        self._prefixes = {source: target for source, target in prefixes.items() if source and target}
        # Longest first, one pass: a files URL under the web host is replaced as a files URL, once.
        alternatives = sorted(self._prefixes, key=len, reverse=True)
        self._prefix = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None

    def text(self, value: str) -> str:
        if len(value) < 8:
            return value
        if self._prefix is not None:
            value = self._prefix.sub(lambda match: self._prefixes[match.group()], value)
        if len(value) >= 32:
            value = ID.sub(lambda match: self.targets.get(match.group(), match.group()), value)
        return value

    def value(self, value):
        """`value` (JSON-like) with its strings and keys translated."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(key): self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def content(self, data: bytes) -> bytes:
        """A text file's bytes translated (UTF-8); other bytes as they were."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data
        return self.text(text).encode("utf-8")


def prefixes(source, target) -> dict[str, str]:
    """The URL prefixes of two `Endpoint`s, source to target."""
    return {source.files: target.files, source.web: target.web, source.api: target.api}


def is_text(content_type: str | None) -> bool:
    return bool(content_type) and content_type.startswith(TEXT_TYPES)
