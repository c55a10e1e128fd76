"""A fake provider, for unit tests only: instances are entries of a dictionary.

It runs no agent. Tests script its failures (``fail_next``) to exercise the error
classes, retries and back-off of cloud operations without a cloud.
"""

from __future__ import annotations

import itertools
import threading

from scitq.scheduler.providers.base import CreatedInstance, InstanceSpec, ProviderError, Report


class FakeProvider:
    """Pretend machines, recorded in memory (tests only)."""

    needs_agent_role = False

    def __init__(self, name: str = "fake", flavors: tuple[str, ...] = ("small", "large")) -> None:
        self.name = name
        self.flavors = flavors
        self.instances: dict[str, CreatedInstance] = {}
        self.specs: dict[str, InstanceSpec] = {}
        #: Errors raised by the next calls of create (or delete), in order.
        self.fail_next: list[ProviderError] = []
        self.fail_next_delete: list[ProviderError] = []
        self.deleted: list[str] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def check(self, flavor: str | None, image: str | None, region: str | None) -> None:
        if flavor is not None and flavor not in self.flavors:
            raise ProviderError(f"unknown flavor {flavor!r} for provider {self.name}", "config")

    def create(self, spec: InstanceSpec, report: Report) -> CreatedInstance:
        with self._lock:
            if self.fail_next:
                raise self.fail_next.pop(0)
            ref = f"fake-{next(self._ids)}"
            created = CreatedInstance(ref, spec.name, "active")
            self.instances[ref] = created
            self.specs[ref] = spec
        report(f"fake instance {ref} created", 50, ref)
        return created

    def delete(self, provider_ref: str, report: Report) -> None:
        with self._lock:
            if self.fail_next_delete:
                raise self.fail_next_delete.pop(0)
            self.instances.pop(provider_ref, None)
            self.deleted.append(provider_ref)
        report(f"fake instance {provider_ref} deleted")

    def status(self, provider_ref: str) -> str:
        return "active" if provider_ref in self.instances else "deleted"

    def list(self) -> list[CreatedInstance]:
        return list(self.instances.values())
