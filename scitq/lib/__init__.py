"""scitq v1's Python client, ``from scitq.lib import Server``, on scitq's database.

scitq v1 scripts run unchanged against it: `Server` has every public method of v1's
(same arguments, defaults and results, v1's field names and status words), built on
`scitq.Client` with no REST server in between. docs/v1-migration.md lists what differs.
"""

from __future__ import annotations

from scitq.errors import ScitqError
from scitq.lib.server import Server

#: What v1 raised for a server-side error; scitq raises its own errors (one base class).
HTTPException = ScitqError

__all__ = ["HTTPException", "Server"]
