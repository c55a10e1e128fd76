"""The single database seam: connections, named queries, models."""

from __future__ import annotations
