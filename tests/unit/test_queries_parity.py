"""The asynchronous agent wrappers mirror the synchronous ones: same names, same
parameters, and every wrapper names an existing query."""

from __future__ import annotations

import inspect

from scitq import sql
from scitq.db import queries, queries_async


def _wrappers(module):
    return {
        name: inspect.signature(function)
        for name, function in vars(module).items()
        if inspect.isfunction(function)
        and function.__module__ == module.__name__
        and not name.startswith("_")
    }


def test_async_twins_match_the_sync_wrappers():
    sync, asynchronous = _wrappers(queries), _wrappers(queries_async)
    assert set(asynchronous) <= set(sync)
    assert {"task_claim", "execution_finish", "worker_heartbeat"} <= set(asynchronous)
    for name, signature in asynchronous.items():
        assert list(signature.parameters) == list(sync[name].parameters), name


def test_every_wrapper_has_a_named_query():
    named = sql.queries()
    for name in _wrappers(queries):
        assert name in named, f"queries.{name} has no named query"
