"""The ``*.get_all`` query language: filters, ordering and paging (``filters``, which runs a request against the
store), the regular-expression guard (``patterns``) and ``only_fields`` projection (``projection``)."""

from .filters import QuerySpec, matches, order, run_query, select
from .patterns import compile_pattern
from .projection import project, projection

__all__ = ["QuerySpec", "compile_pattern", "matches", "order", "project", "projection", "run_query", "select"]
