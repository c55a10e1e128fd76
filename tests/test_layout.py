"""The package's shape: imports flow one way, no circles, small modules, one vocabulary.

Every import statement counts, wherever it stands (module level, inside a function,
under ``TYPE_CHECKING``): a lazy import does not hide a circle from this check.

Layers, from the top: the processes and front ends (cli, web, scheduler, agent,
workflow, the v1 compatibility modules) -> client -> embedded -> db -> sql; errors,
states, version, config and transfer are leaves that the others may use.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from scitq import states

PACKAGE = Path(__file__).resolve().parent.parent / "scitq"
MAX_LINES = 450

#: What each part of the package may import (besides itself).
LEAVES = {"errors", "states", "config", "version"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "states": set(),
    "version": set(),
    "config": {"errors"},
    "sql": set(),
    "transfer": {"errors", "config", "states", "version"},
    "db": {"errors", "config", "states", "version", "sql"},
    "embedded": {"errors", "config", "version", "db"},
    "client": LEAVES | {"db", "embedded", "transfer"},
    "workflow": LEAVES | {"client", "db", "fetch", "compat"},
    "agent": LEAVES | {"db", "transfer"},
    "scheduler": LEAVES | {"db", "embedded"},
    "web": LEAVES | {"db", "embedded", "client"},
    "lib": LEAVES | {"client", "db", "embedded", "transfer", "workflow", "fetch", "compat"},
    "fetch": LEAVES | {"transfer"},
    # v1 argument forms (space-separated URI strings) shared by the v1 modules
    "compat": {"errors"},
    "cli": LEAVES
    | {
        "db",
        "embedded",
        "client",
        "transfer",
        "workflow",
        "agent",
        "scheduler",
        "web",
        "root",
        "fetch",
        "compat",
        "lib",
    },
    "__main__": {"cli"},
    # the package root re-exports the Python API
    "root": {"client", "workflow", "version"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The scitq modules that ``name`` (at ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("scitq"):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("scitq"):
                continue
            for alias in node.names:
                # ``from scitq.db import migrate`` imports the module scitq.db.migrate
                sub = f"{target}.{alias.name}"
                yield sub if sub in known else target


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {
        name: {target for target in imported(name, path, known) if target != name}
        for name, path in found.items()
    }


def part(name: str) -> str:
    parts = name.split(".")
    return "root" if len(parts) == 1 else parts[1]


def test_no_import_circles() -> None:
    edges = graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert circles == [], "\n".join(" -> ".join(circle) for circle in circles)


def test_imports_follow_the_layers() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items()
        for target in targets
        if part(target) != part(name) and part(target) not in ALLOWED[part(name)]
    )
    assert wrong == []


def test_every_part_has_a_layer() -> None:
    assert {part(name) for name in modules()} <= set(ALLOWED)


def test_no_module_is_too_long() -> None:
    long = {
        name: lines
        for name, path in modules().items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


#: Words spelled like a status that are not one: (module, word) -> what they are.
NOT_STATUSES = {
    ("scitq.cli.db", "running"): "whether the embedded server runs (db status --json key)",
    ("scitq.cli.up", "stopped"): "what `scitq up` says it did when no signal was received",
    ("scitq.cli.batch", "paused"): "a batch's is_paused flag shown as a word",
    ("scitq.web.responses", "paused"): "the past participle of the pause action",
    ("scitq.web.responses", "canceled"): "the past participle of the cancel action",
}


def status_words() -> set[str]:
    kinds = (
        states.TaskStatus,
        states.ExecutionStatus,
        states.WorkerLiveness,
        states.CloudOperationStatus,
    )
    return {member.value for kind in kinds for member in kind}


def spelled_status_words(path: Path, words: set[str]) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in words
            and id(node) not in docstrings
        ):
            yield node.lineno, node.value


def test_status_words_are_spelled_only_in_states() -> None:
    words = status_words()
    spelled = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {word!r}"
        for name, path in modules().items()
        if name != "scitq.states"
        for line, word in spelled_status_words(path, words)
        if (name, word) not in NOT_STATUSES
    ]
    assert spelled == [], "use scitq.states:\n" + "\n".join(spelled)
