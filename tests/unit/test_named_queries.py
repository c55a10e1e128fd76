"""One name in three places: every named query of ``scitq/sql/queries`` is wrapped
exactly once in `scitq.db`, by a wrapper of its name in the module of its file, and the
stored function a query calls is ``scitq.<name>_vN`` and exists."""

from __future__ import annotations

import importlib
import pkgutil
import re
from importlib import resources

import scitq.db
from scitq import sql
from scitq.db.query import NamedQuery, wrappers

CALL = re.compile(r"\bscitq\.([a-z_][a-z0-9_]*)_v([0-9]+)\s*\(")
DEFINED = re.compile(r"FUNCTION\s+scitq\.([a-z_][a-z0-9_]*_v[0-9]+)\s*\(", re.IGNORECASE)
#: Queries that call a function of another stem, and why.
OTHER_STEM = {
    # the many-ids version (v2) of the single-id function, which agents of the previous
    # release still call through execution_set_phase
    "execution_set_phases": "execution_set_phase",
}


def _wrappers_by_module() -> dict[str, dict[str, NamedQuery[..., object]]]:
    found = {}
    for info in pkgutil.iter_modules(scitq.db.__path__):
        module = importlib.import_module(f"scitq.db.{info.name}")
        own = {
            name: wrapper
            for name, wrapper in wrappers(vars(module)).items()
            if wrapper.__module__ == module.__name__
        }
        if own:
            found[info.name] = own
    return found


def _query_files() -> dict[str, set[str]]:
    folder = resources.files(sql) / "queries"
    return {
        entry.name.removesuffix(".sql"): set(sql.parse_queries(entry.read_text(encoding="utf-8")))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    }


def test_every_named_query_is_wrapped_once_in_the_module_of_its_file() -> None:
    by_module = _wrappers_by_module()
    files = _query_files()
    assert set(by_module) == set(files), "one wrapper module per query file, of the same name"
    for stem, names in files.items():
        assert set(by_module[stem]) == names, stem
    every = [name for own in by_module.values() for name in own]
    assert len(every) == len(set(every)) == len(sql.queries())


def test_every_wrapper_runs_its_named_query() -> None:
    for own in _wrappers_by_module().values():
        for name, wrapper in own.items():
            assert wrapper.name == name
            assert wrapper.sql == sql.queries()[name]


def test_the_functions_queries_call_are_theirs_and_exist() -> None:
    defined = {match[1] for _, text in sql.function_sources() for match in DEFINED.finditer(text)}
    for name, text in sql.queries().items():
        for stem, version in CALL.findall(text):
            assert stem == OTHER_STEM.get(name, name), f"{name} calls scitq.{stem}_v{version}"
            assert f"{stem}_v{version}" in defined, (
                f"{name}: scitq.{stem}_v{version} is not defined"
            )
