"""The ``openstack`` provider: one server per worker, through openstacksdk.

A server gets the flavor, image and network of its recruiter (or the provider's
defaults), an optional keypair, and the cloud-init user data of `cloudinit.user_data`:
it installs exactly the scheduler's scitq (the wheel it serves, sha256 checked, or
``scitq==<version>`` from an index), a container runtime when asked, and starts ``scitq
agent`` as a systemd service. The agent's database URL, with the password of the
worker's own login role, and the forwarded storage credentials are written by cloud-init
to ``/etc/scitq/agent.env`` (mode 0600); the only other copy is the server's user data at
the cloud (readable through the metadata service by the server itself and by the
project's API users). scitq keeps no copy: the database holds the role's SCRAM verifier
only.

Servers carry the metadata ``scitq=<name prefix>`` so that `list` finds scitq's servers
(orphans included). Failures are classified: ``auth`` (401), ``quota`` (403/413 naming a
quota), ``capacity`` (no valid host), ``config`` (unknown flavor, image, network; 400),
``transient`` (unreachable endpoint, 5xx, timeouts).
"""

from __future__ import annotations

import base64
import logging
import re
import time
from typing import Any

from scitq.config import OpenStackSettings
from scitq.scheduler.providers.base import CreatedInstance, InstanceSpec, ProviderError, Report
from scitq.scheduler.providers.cloudinit import Bootstrap, user_data
from scitq.version import __version__

logger = logging.getLogger(__name__)

#: The user data in a request or response body, as keystoneauth logs them at DEBUG level.
_USER_DATA = re.compile(r'("(?:OS-EXT-SRV-ATTR:)?user_data"\s*:\s*)"[^"]*"')


class _RedactUserData(logging.Filter):
    """Keeps the user data (the agent's password, the storage credentials) out of the
    SDK's debug log of request and response bodies."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "user_data" in message:
            record.msg, record.args = _USER_DATA.sub(r'\1"<redacted by scitq>"', message), ()
        return True


def _redact_sdk_logs() -> None:
    for name in ("keystoneauth.session", "keystoneauth.session.body", "openstack"):
        found = logging.getLogger(name)
        if not any(isinstance(f, _RedactUserData) for f in found.filters):
            found.addFilter(_RedactUserData())


_STATUS = {"BUILD": "building", "ACTIVE": "active", "ERROR": "error", "DELETED": "deleted"}


def classify(error: BaseException) -> ProviderError:
    """A provider error with its class, from an openstacksdk or keystoneauth error."""
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, ProviderError):
        return error
    if isinstance(error, ks.Unauthorized) or getattr(error, "status_code", None) == 401:
        return ProviderError(f"authentication refused by OpenStack: {message}", "auth")
    if isinstance(error, ks.ConnectFailure | ks.ConnectTimeout | ks.DiscoveryFailure):
        return ProviderError(f"OpenStack unreachable: {message}", "transient")
    if isinstance(error, sdk.ResourceTimeout):
        return ProviderError(message, "transient")
    status = getattr(error, "status_code", None)
    if status in (403, 413) and "quota" in message.lower():
        return ProviderError(f"quota exceeded: {message}", "quota")
    if status == 403:
        return ProviderError(f"forbidden by OpenStack: {message}", "auth")
    if status in (400, 404):
        return ProviderError(message, "config")
    if (status is not None and status >= 500) or isinstance(error, ks.ClientException):
        return ProviderError(message, "transient")
    return ProviderError(message, "unknown")


class OpenStackProvider:
    """Servers of an OpenStack cloud (OVH, Infomaniak, a lab's own...)."""

    name = "openstack"
    needs_agent_role = True

    def __init__(
        self,
        settings: OpenStackSettings,
        name: str = "openstack",
        bootstrap: Bootstrap | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        #: what instances install and receive besides their spec (`scitq.scheduler.wheel_server`)
        self.bootstrap = bootstrap or Bootstrap(version=__version__)
        _redact_sdk_logs()
        self._connection: Any = None

    def _conn(self) -> Any:
        if self._connection is None:
            import openstack

            try:
                if self.settings.cloud:
                    self._connection = openstack.connect(
                        cloud=self.settings.cloud, region_name=self.settings.region
                    )
                else:
                    self._connection = openstack.connection.Connection(
                        auth=dict(self.settings.auth), auth_type="password",
                        region_name=self.settings.region, identity_api_version="3",
                    )  # fmt: skip
            except Exception as exc:
                raise classify(exc) from exc
        return self._connection

    def _call(self, what: str, function: Any) -> Any:
        """``function()`` with its errors classified (attribute access such as
        ``conn.compute`` authenticates, so it happens inside too)."""
        try:
            return function()
        except Exception as exc:
            error = classify(exc)
            raise ProviderError(f"{what}: {error}", error.error_class) from exc

    def _resolve(self, flavor: str | None, image: str | None) -> tuple[Any, Any, Any]:
        conn = self._conn()
        flavor = flavor or self.settings.flavor
        image = image or self.settings.image
        if not flavor or not image:
            raise ProviderError(
                "openstack needs a flavor and an image (recruiter or defaults)", "config"
            )
        found_flavor = self._call(
            "flavor lookup", lambda: conn.compute.find_flavor(flavor, ignore_missing=True)
        )
        if found_flavor is None:
            raise ProviderError(f"unknown flavor {flavor!r} for provider openstack", "config")
        found_image = self._call(
            "image lookup", lambda: conn.image.find_image(image, ignore_missing=True)
        )
        if found_image is None:
            raise ProviderError(f"unknown image {image!r} for provider openstack", "config")
        network = None
        if self.settings.network:
            network = self._call(
                "network lookup",
                lambda: conn.network.find_network(
                    self.settings.network,
                    ignore_missing=True,
                ),
            )
            if network is None:
                raise ProviderError(f"unknown network {self.settings.network!r}", "config")
        return found_flavor, found_image, network

    def check(self, flavor: str | None, image: str | None, region: str | None) -> None:
        self._resolve(flavor, image)

    def create(self, spec: InstanceSpec, report: Report) -> CreatedInstance:
        conn = self._conn()
        flavor, image, network = self._resolve(spec.flavor, spec.image)
        document = user_data(spec, self.bootstrap, self.settings)
        arguments: dict[str, Any] = {
            "name": spec.name, "flavor_id": flavor.id, "image_id": image.id,
            "user_data": base64.b64encode(document.encode()).decode(),
            "metadata": {"scitq": self.settings.name_prefix, "scitq_batch": spec.batch},
        }  # fmt: skip
        if network is not None:
            arguments["networks"] = [{"uuid": network.id}]
        if self.settings.key_name:
            arguments["key_name"] = self.settings.key_name
        if self.settings.security_groups:
            arguments["security_groups"] = [{"name": g} for g in self.settings.security_groups]
        server = self._call("server creation", lambda: conn.compute.create_server(**arguments))
        report(
            f"server {server.id} requested (flavor {flavor.name}, image {image.name})",
            30,
            server.id,
        )
        deadline = time.monotonic() + self.settings.boot_seconds
        while True:
            current = self._call("server status", lambda: conn.compute.get_server(server.id))
            status = (current.status or "").upper()
            if status == "ACTIVE":
                report(f"server {server.id} is active; cloud-init installs scitq", 80)
                return CreatedInstance(server.id, spec.name, "building")
            if status == "ERROR":
                fault = (current.fault or {}).get("message", "no reason given")
                self._cleanup(server.id, report)
                error_class = "capacity" if "valid host" in fault.lower() else "unknown"
                raise ProviderError(f"server {server.id} went to ERROR: {fault}", error_class)
            if time.monotonic() > deadline:
                self._cleanup(server.id, report)
                raise ProviderError(
                    f"server {server.id} not active after {self.settings.boot_seconds:g} s",
                    "transient",
                )
            time.sleep(self.settings.poll_seconds)

    def _cleanup(self, server_id: str, report: Report) -> None:
        try:
            self._conn().compute.delete_server(server_id, ignore_missing=True)
            report(f"server {server_id} deleted after its failure")
        except Exception as exc:  # recorded; the failure itself is what matters
            report(f"could not delete server {server_id} after its failure: {classify(exc)}")

    def delete(self, provider_ref: str, report: Report) -> None:
        conn = self._conn()
        self._call(
            "server deletion", lambda: conn.compute.delete_server(provider_ref, ignore_missing=True)
        )
        report(f"server {provider_ref} deletion requested", 50)
        deadline = time.monotonic() + self.settings.boot_seconds
        while time.monotonic() < deadline:
            found = self._call(
                "server status", lambda: conn.compute.find_server(provider_ref, ignore_missing=True)
            )
            if found is None:
                report(f"server {provider_ref} deleted", 90)
                return
            time.sleep(self.settings.poll_seconds)
        raise ProviderError(
            f"server {provider_ref} still exists after {self.settings.boot_seconds:g} s",
            "transient",
        )

    def status(self, provider_ref: str) -> str:
        found = self._call(
            "server status",
            lambda: self._conn().compute.find_server(provider_ref, ignore_missing=True),
        )
        if found is None:
            return "deleted"
        return _STATUS.get((found.status or "").upper(), "building")

    def list(self) -> list[CreatedInstance]:
        servers = self._call("server listing", lambda: self._conn().compute.servers(details=True))
        return [
            CreatedInstance(s.id, s.name, _STATUS.get((s.status or "").upper(), "building"))
            for s in servers
            if (s.metadata or {}).get("scitq") == self.settings.name_prefix
        ]
