"""Test configuration: real PostgreSQL for everything that touches SQL.

By default the suite starts its own embedded server in a temporary directory;
``SCITQ_TEST_DATABASE_URL`` points it at another server instead (a superuser
connection: the tests create databases and roles).
"""

from __future__ import annotations

import os
import tempfile

# Settings must never come from the developer's environment during tests.
for _name in list(os.environ):
    if _name.startswith("SCITQ_") and _name != "SCITQ_TEST_DATABASE_URL":
        del os.environ[_name]

# Nothing the tests start writes to the machine's data dir (/var/lib/scitq as root):
# agents' name locks and work dirs, resource caches and local agents go to a folder of
# this run (traversable: the embedded server may run as another user). Tests of the
# default remove it with monkeypatch.
_DATA_DIR = tempfile.mkdtemp(prefix="scitq-test-data-", dir="/tmp")
os.chmod(_DATA_DIR, 0o755)
os.environ["SCITQ_DATA_DIR"] = _DATA_DIR

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.agents",
    "tests.fixtures.ena_standin",
    "tests.fixtures.netns",
    "tests.fixtures.servers",
    "tests.fixtures.replication",
]


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Mark every test that uses the database fixtures as ``sql``."""
    import pytest

    for item in items:
        if "server_conninfo" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sql)
