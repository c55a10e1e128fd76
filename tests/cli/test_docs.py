"""What the docs show of the current state: the schema head, the data directory, the
Python API page."""

from __future__ import annotations

import re

from scitq.db import migrate
from tests.cli.conftest import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"


def test_the_status_example_shows_the_head_revision() -> None:
    shown = re.findall(r"^Migration +(\S+) \(head\)$", (DOCS / "sql-api.md").read_text(), re.M)
    assert shown == [migrate.head_revision()], "docs/sql-api.md: update the `db status` example"


def test_the_data_directory_and_the_python_api_are_documented() -> None:
    operations = (DOCS / "operations.md").read_text()
    assert "### The data directory" in operations and "SCITQ_DATA_DIR" in operations
    assert "/var/lib/scitq" in operations
    assert "### Agents on one machine" in operations
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "docs/python-api.md" in readme
    api = (DOCS / "python-api.md").read_text()
    for method in ("submit", "submit_many", "wait", "explain", "log_chunks", "retry", "cancel"):
        assert f"`{method}(" in api, method
