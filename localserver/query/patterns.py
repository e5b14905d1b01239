"""The regular-expression guard: client patterns are compiled only within a subset that cannot backtrack
exponentially, and matched on a bounded subject within a time budget per request."""

from __future__ import annotations

import functools
import re
import re._constants as sre_constants
import re._parser as sre_parser

from ..errors import bad_request

# Client patterns run with Python's `re`, which backtracks and holds the GIL for a whole match, so a pattern
# such as ``^(a+)+$`` could stall every thread of the server. Only a safe subset is accepted: at most
# MAX_PATTERN_LENGTH characters, no backreferences, no quantifier or alternation inside a quantified group (the
# constructs that backtrack exponentially), and at most MAX_QUANTIFIERS quantifiers (``*``, ``+``, ``{m,n}``)
# once redundant leading/trailing ``.*`` are dropped, so one match costs at most O(n^2) in the subject length;
# subjects are matched on their first MAX_PATTERN_SUBJECT characters (a few ms at worst), and one request's
# matching stops with a 400 after MATCH_BUDGET_SEC. Matching never runs under the store's write lock.
MAX_PATTERN_LENGTH = 256
MAX_QUANTIFIERS = 1
MAX_PATTERN_SUBJECT = 1024
MATCH_BUDGET_SEC = 1.0


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str):
    """A compiled case-insensitive pattern within the safe subset (see MAX_QUANTIFIERS); 400 outside it. An
    invalid regular expression is matched as a plain substring, as before."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise bad_request(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    stripped = _strip_redundant_wildcards(pattern)
    try:
        tree = sre_parser.parse(stripped, re.IGNORECASE)
    except (re.error, RecursionError, OverflowError):
        return None
    quantifiers = _check_safe(list(tree), inside_repeat=False)
    if quantifiers > MAX_QUANTIFIERS:
        raise bad_request(f"pattern {pattern!r} has more than {MAX_QUANTIFIERS} quantifier (*, +, {{m,n}})")
    return re.compile(stripped, re.IGNORECASE)


def _strip_redundant_wildcards(pattern: str) -> str:
    # A search for ".*x.*" finds what a search for "x" finds.
    for prefix in ("^.*", ".*"):
        if pattern.startswith(prefix) and not pattern[len(prefix) :].startswith(("?", "+", "*")):
            pattern = pattern[len(prefix) :]
            break
    if pattern.endswith(".*"):
        body = pattern[:-2]
        escapes = len(body) - len(body.rstrip("\\"))
        if escapes % 2 == 0:
            pattern = body
    return pattern


_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, getattr(sre_constants, "POSSESSIVE_REPEAT", None)}


def _check_safe(items, inside_repeat: bool) -> int:
    """The number of quantifiers in ``items``; raises 400 on a construct that can backtrack exponentially."""
    count = 0
    for op, arg in items:
        if op in _REPEATS:
            low, high, sub = arg
            if high > 1:
                if inside_repeat:
                    raise bad_request("pattern has a quantifier inside a quantified group (catastrophic backtracking)")
                count += 1
            count += _check_safe(list(sub), inside_repeat or high > 1)
        elif op is sre_constants.BRANCH:
            if inside_repeat:
                raise bad_request("pattern has an alternation inside a quantified group (catastrophic backtracking)")
            count += sum(_check_safe(list(alternative), inside_repeat) for alternative in arg[1])
        elif op is sre_constants.SUBPATTERN:
            count += _check_safe(list(arg[3]), inside_repeat)
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            count += _check_safe(list(arg[1]), inside_repeat)
        elif op is getattr(sre_constants, "ATOMIC_GROUP", None):
            count += _check_safe(list(arg), inside_repeat)
        elif op in (sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS, sre_constants.GROUPREF_IGNORE):
            raise bad_request("pattern has a backreference")
    return count
