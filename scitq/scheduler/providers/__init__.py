"""Cloud providers: where the scheduler gets machines for workers.

Every provider implements `scitq.scheduler.providers.base.Provider` (create, delete, status, list).
`build_providers` makes the configured ones: ``local`` (agents as processes on this
machine) and ``openstack`` (servers through openstacksdk); ``fake`` exists for unit tests
only.
"""

from __future__ import annotations

from scitq.scheduler.providers.base import (
    ERROR_CLASSES,
    CreatedInstance,
    InstanceSpec,
    Provider,
    ProviderError,
    Report,
    build_providers,
)

__all__ = [
    "ERROR_CLASSES",
    "CreatedInstance",
    "InstanceSpec",
    "Provider",
    "ProviderError",
    "Report",
    "build_providers",
]
