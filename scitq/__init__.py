"""scitq: a distributed scientific task queue coordinated by PostgreSQL."""

from __future__ import annotations

__version__ = "2.0.0.dev0"
