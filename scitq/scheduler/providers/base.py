"""The provider interface, the instance specification and classified provider errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from scitq.errors import ScitqError

#: Why a provider operation failed; ``transient`` failures are retried with back-off.
ERROR_CLASSES = ("quota", "auth", "capacity", "transient", "config", "unknown")


class ProviderError(ScitqError):
    """A provider operation failed.

    Attributes:
        error_class: one of `ERROR_CLASSES`.
    """

    exit_code = 8

    def __init__(self, message: str, error_class: str = "unknown") -> None:
        if error_class not in ERROR_CLASSES:
            raise ValueError(f"unknown provider error class {error_class!r}")
        super().__init__(message)
        self.error_class = error_class

    @property
    def retryable(self) -> bool:
        return self.error_class == "transient"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceSpec:
    """What to create: a machine running one agent.

    Attributes:
        name: the instance's name, which is also its worker's name.
        batch: the batch its agent serves.
        concurrency, prefetch: of its agent.
        flavor, image, region: provider-specific; None takes the provider's default.
        database_url: what its agent connects to, credentials included: passed to the
            machine only (never logged, never stored by scitq).
    """

    name: str
    batch: str
    concurrency: int
    prefetch: int
    flavor: str | None
    image: str | None
    region: str | None
    database_url: str


@dataclass(frozen=True, slots=True)
class CreatedInstance:
    """What a provider knows of an instance: its reference and state."""

    provider_ref: str
    name: str
    status: str  # building, active, deleted, error


class Report(Protocol):
    """Progress of an operation: a log line and, optionally, a percentage and the
    provider's reference of the instance once known."""

    def __call__(
        self, message: str, progress: int | None = None, provider_ref: str | None = None
    ) -> None: ...


class Provider(Protocol):
    """A source of machines. Every method may raise `ProviderError`; all are slow and
    run outside database transactions."""

    name: str
    #: Whether the agents it starts need their own database role and password (cloud
    #: machines); the local provider's agents use the scheduler's connection.
    needs_agent_role: bool

    def check(self, flavor: str | None, image: str | None, region: str | None) -> None:
        """Raise `ProviderError` (class ``config``) if these cannot be deployed."""

    def create(self, spec: InstanceSpec, report: Report) -> CreatedInstance:
        """Create an instance whose agent serves ``spec.batch``; return once it exists."""

    def delete(self, provider_ref: str, report: Report) -> None:
        """Destroy an instance (gracefully when possible); no error if it is gone."""

    def status(self, provider_ref: str) -> str:
        """``building``, ``active``, ``deleted`` or ``error``."""

    def list(self) -> list[CreatedInstance]:
        """The instances this provider runs for scitq (to find orphans)."""
