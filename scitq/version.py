"""The version of scitq (read by the build, `scitq.__version__` and the HTTP User-Agent)."""

from __future__ import annotations

__version__ = "2.0.0.dev0"
