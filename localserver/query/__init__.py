"""The ``*.get_all`` query language: a request parsed once into typed conditions (``language``), which both the
SQL compiler that runs it against the store (``sql``) and the Python matcher read; the regular-expression guard
(``patterns``) and ``only_fields`` projection (``projection``)."""

from .language import Query, QuerySpec, parse, run_query
from .patterns import compile_pattern
from .projection import project, projection
from .sql import select

__all__ = ["Query", "QuerySpec", "compile_pattern", "parse", "project", "projection", "run_query", "select"]
