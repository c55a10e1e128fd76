"""Cloud providers: where the scheduler gets machines for workers.

Every provider implements `scitq.scheduler.providers.base.Provider` (create, delete,
status, list). `build_providers` makes the configured ones: ``local`` (agents as
processes on this machine, `scitq.scheduler.providers.local`) and ``openstack`` (servers
through openstacksdk, `scitq.scheduler.providers.openstack`); ``fake``
(`scitq.scheduler.providers.fake`) exists for unit tests only. The providers import the
interface (``base``), never this package's factory.
"""

from __future__ import annotations

from scitq.config import ProviderSettings
from scitq.scheduler.providers.base import (
    ERROR_CLASSES,
    CreatedInstance,
    InstanceSpec,
    Provider,
    ProviderError,
    Report,
)
from scitq.scheduler.providers.cloudinit import Bootstrap

__all__ = [
    "ERROR_CLASSES",
    "CreatedInstance",
    "InstanceSpec",
    "Provider",
    "ProviderError",
    "Report",
    "build_providers",
]


def build_providers(
    settings: ProviderSettings, bootstrap: Bootstrap | None = None
) -> dict[str, Provider]:
    """The providers configured in ``settings`` by name (``local`` always, ``openstack``
    when configured, and each ``[scheduler.providers.<name>]`` of its kind); cloud ones
    give their instances ``bootstrap`` (the scheduler's wheel, forwarded credentials)."""
    # imported here: loading the interface (for the operations, the tests) loads no provider
    from scitq.scheduler.providers.local import LocalProvider

    providers: dict[str, Provider] = {}
    for name in settings.names():
        found = settings.provider(name)
        assert found is not None
        if found.local is not None:
            providers[name] = LocalProvider(
                found.local, name=name, flavors=found.flavors, regions=found.regions
            )
        elif found.openstack is not None:
            from scitq.scheduler.providers.openstack import OpenStackProvider

            providers[name] = OpenStackProvider(found.openstack, name=name, bootstrap=bootstrap)
    return providers
