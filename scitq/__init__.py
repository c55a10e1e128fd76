"""scitq: a distributed scientific task queue coordinated by PostgreSQL.

``scitq.Client`` and ``scitq.Workflow`` are imported on first use, so that
``import scitq`` (and the CLI) stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scitq.version import __version__

__all__ = ["Client", "Workflow", "__version__"]

if TYPE_CHECKING:
    from scitq.client import Client
    from scitq.workflow.native import Workflow


def __getattr__(name: str) -> Any:
    if name == "Client":
        from scitq.client import Client

        return Client
    if name == "Workflow":
        from scitq.workflow.native import Workflow

        return Workflow
    raise AttributeError(f"module 'scitq' has no attribute {name!r}")
