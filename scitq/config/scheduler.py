"""``[scheduler]``, ``[scheduler.local]``, ``[scheduler.openstack]``: how the scheduler
runs and which providers it recruits from (``SCITQ_SCHEDULER_*``, ``SCITQ_LOCAL_*``,
``SCITQ_OPENSTACK_*``; docs/operations.md)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scitq.config.paths import default_data_dir
from scitq.config.source import NOT_A_KEY, ConfigSource, key
from scitq.errors import ConfigError, InvalidArgument


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalProviderSettings:
    """The ``local`` provider: agents as processes of this machine (``[scheduler.local]``).

    Attributes:
        state_dir: where each agent's pid file, log and work directory go.
        max_agents: agents it runs at most (its quota).
        agent_options: extra options for ``scitq agent`` (e.g. ``["--heartbeat", "1"]``).
        stop_grace_seconds: after SIGTERM, how long an agent may hand back its tasks
            before it is killed.
    """

    state_dir: Path = field(default_factory=lambda: default_data_dir() / "local-agents")
    max_agents: int = field(default_factory=lambda: os.cpu_count() or 1)
    agent_options: tuple[str, ...] = ()
    stop_grace_seconds: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenStackSettings:
    """The ``openstack`` provider (``[scheduler.openstack]``).

    Attributes:
        cloud: a cloud name of ``clouds.yaml``; None: ``auth`` below.
        auth: keystone auth (``auth_url``, ``username``, ``password``, ``project_name``,
            ``user_domain_name``, ``project_domain_name``) when no cloud is named.
        region: the default region.
        flavor, image: defaults when a recruiter names none.
        network: the network servers are attached to (name or id).
        key_name: a keypair for SSH access (optional).
        security_groups: names of security groups (optional).
        max_instances: servers it runs at most (its quota as scitq counts it).
        name_prefix: servers (and workers) are named ``<prefix>-<instance id>``.
        install_from: ``scheduler``: the wheel of the scheduler's own scitq, from its wheel
            server (``[scheduler] wheel_listen``), its sha256 checked; ``index``:
            ``scitq==<the scheduler's version>`` from ``pip_index_url`` (or PyPI).
        pip_index_url: the package index pip uses on the instance (scitq's dependencies,
            and scitq itself with ``install_from = "index"``); None: pip's default.
        install_command: replaces the pip step of the install (run in ``sh`` after
            ``python3 -m venv /opt/scitq``); ``scitq --version`` is checked after it all the
            same. None: the install ``install_from`` says.
        packages: distribution packages cloud-init installs first (Debian/Ubuntu names).
        container_runtime: ``podman`` or ``docker`` (Debian's ``docker.io``) to install, for
            container tasks; None: none.
        forward_credentials: give instances this scheduler's storage credentials
            (``[transfer.s3]``, ``[transfer.ftp]``, the rclone configuration) through their
            user data (a 0600 file), so that their tasks reach the same stores.
        boot_seconds: how long to wait for a server to become ACTIVE.
        poll_seconds: how often to ask.
    """

    cloud: str | None = None
    auth: dict[str, str] = field(default_factory=dict, repr=False, metadata=NOT_A_KEY)
    region: str | None = None
    flavor: str | None = None
    image: str | None = None
    network: str | None = None
    key_name: str | None = None
    security_groups: tuple[str, ...] = ()
    max_instances: int = 10
    name_prefix: str = "scitq"
    install_from: str = field(
        default="scheduler", metadata=key(check=_one_of("scheduler", "index"))
    )
    pip_index_url: str | None = None
    install_command: str | None = None
    packages: tuple[str, ...] = ("python3-venv",)
    container_runtime: str | None = field(
        default=None, metadata=key(check=_one_of("podman", "docker"))
    )
    forward_credentials: bool = True
    boot_seconds: float = 600.0
    poll_seconds: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _OpenStackAuthKeys:
    """The keys of ``[scheduler.openstack.auth]`` (never read from scitq's variables)."""

    auth_url: str | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    project_name: str | None = None
    project_id: str | None = None
    user_domain_name: str | None = None
    project_domain_name: str | None = None
    project_domain_id: str | None = None


#: The kinds of provider a ``[scheduler.providers.<name>]`` table may be.
PROVIDER_KINDS = ("local", "openstack")
#: A region or flavor the ``local`` kind always serves (the machine it runs on).
LOCAL_FLAVOR = "local"
_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class NamedProviderSettings:
    """A provider the user named (``[scheduler.providers.<name>]``), of a kind.

    scitq v1 scripts name providers, regions and flavors of their cloud
    (``provider='ovh', region='GRA11', flavor='c2-120'``): a named provider serves them
    with one of scitq's kinds, an OpenStack cloud or agents on this machine.

    Attributes:
        name: what deploys and recruiters call it.
        kind: ``local`` or ``openstack``.
        regions: the region names it serves; empty: ``local`` serves only ``local``, an
            ``openstack`` provider its cloud's region (``region``) or, with none, any.
        flavors: the flavor names it serves; empty: ``local`` serves only ``local``, an
            ``openstack`` provider any flavor (its cloud checks it when deploying).
        local, openstack: the settings of its kind (the keys of ``[scheduler.local]`` or
            ``[scheduler.openstack]``, in its own table).
    """

    name: str
    kind: str
    regions: tuple[str, ...] = ()
    flavors: tuple[str, ...] = ()
    local: LocalProviderSettings | None = None
    openstack: OpenStackSettings | None = None

    def served(self, what: str) -> list[str]:
        """The names of ``what`` (``region`` or ``flavor``) it serves, when it says."""
        listed = list(self.regions if what == "region" else self.flavors)
        if self.kind == "local":
            return [*listed, LOCAL_FLAVOR]
        default = self.openstack.region if self.openstack is not None else None
        return listed or ([default] if what == "region" and default else [])

    def accepts(self, what: str, value: str | None) -> bool:
        listed = self.regions if what == "region" else self.flavors
        if value is None or value in listed:
            return True
        if self.kind == "local":
            return value == LOCAL_FLAVOR
        if what == "region":
            default = self.openstack.region if self.openstack is not None else None
            return not listed and (default is None or value == default)
        return not listed


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSettings:
    """The providers the scheduler may use: ``local`` always, ``openstack`` when set, and
    those named under ``[scheduler.providers]``."""

    local: LocalProviderSettings = field(default_factory=LocalProviderSettings)
    openstack: OpenStackSettings | None = None
    named: dict[str, NamedProviderSettings] = field(default_factory=dict)

    def provider(self, name: str) -> NamedProviderSettings | None:
        """The provider called ``name`` (``local`` and ``openstack`` included), or None."""
        if name == "local":
            return NamedProviderSettings(name=name, kind="local", local=self.local)
        if name == "openstack" and self.openstack is not None:
            return NamedProviderSettings(name=name, kind="openstack", openstack=self.openstack)
        return self.named.get(name)

    def names(self) -> list[str]:
        return ["local", *(["openstack"] if self.openstack else []), *sorted(self.named)]

    def quotas(self) -> dict[str, int]:
        """The instance limit of each provider."""
        quotas = {}
        for name in self.names():
            found = self.provider(name)
            assert found is not None
            if found.local is not None:
                quotas[name] = found.local.max_agents
            elif found.openstack is not None:
                quotas[name] = found.openstack.max_instances
        return quotas

    def check_deploy(
        self, provider: str, flavor: str | None, region: str | None, image: str | None = None
    ) -> None:
        """Refuse, in one line, a deploy these providers cannot serve.

        Raises:
            InvalidArgument: no provider of that name, or it serves no such region, flavor
                or image.
        """
        found = self.provider(provider)
        if found is None:
            raise InvalidArgument(
                f"unknown provider {provider!r}: the configured ones are "
                f"{', '.join(self.names())}; name it in a [scheduler.providers.{provider}] "
                'table of the configuration file (kind = "local" or "openstack")'
            )
        for what, value in (("region", region), ("flavor", flavor)):
            if not found.accepts(what, value):
                served = ", ".join(found.served(what))
                raise InvalidArgument(
                    f"provider {provider!r} has no {what} {value!r}: it serves {served} "
                    f"(the {what}s key of [scheduler.providers.{provider}] lists them)"
                )
        if image is not None and found.kind == "local":
            raise InvalidArgument(
                f"provider {provider!r} runs agents on this machine: it takes no image"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSettings:
    """How the scheduler runs: the options of ``scitq scheduler``.

    Retention periods of None keep rows forever.
    """

    #: Period of the frequent duties: lease expiry, timeouts, worker liveness.
    duty_seconds: float = 10.0
    #: Period of the retention duty (output and decision log pruning).
    retention_seconds: float = 3600.0
    #: An execution past its download or run timeout by this much gets a kill signal;
    #: still live this long after the signal, it is marked timed out. Longer than the
    #: agent's own TERM-then-KILL sequence, which normally ends it first.
    timeout_grace_seconds: float = 60.0
    #: Drop the output of succeeded attempts this many days after the last attempt of its
    #: partition (a range of execution ids) ended: a partition drop, never a DELETE.
    output_retention_days: float | None = None
    #: Keep the output of attempts that did not succeed this long (None: forever); it is
    #: copied aside when the rest of its partition is dropped. Shorter than
    #: output_retention_days, it is kept as long as that anyway.
    failed_output_retention_days: float | None = None
    #: Drop the task event log by whole partitions older than this many days.
    event_retention_days: float | None = None
    #: Period of the partitions duty (create partitions ahead, fold batch counters).
    partition_seconds: float = 60.0
    #: Execution ids per partition of execution output.
    output_partition_executions: int = 100_000
    #: Days per partition of the task event log.
    event_partition_days: int = 7
    #: Partitions created ahead of the newest execution (and of today, for events).
    partitions_ahead: int = 4
    #: Delete scheduler decisions older than this many days.
    decision_retention_days: float | None = 30.0
    #: Rows deleted per transaction by the retention duty.
    retention_batch: int = 10000
    #: A standby scheduler tries to take the lock this often.
    lock_retry_seconds: float = 2.0
    #: The active scheduler checks that it still holds the lock this often.
    lock_check_seconds: float = 2.0
    #: On SIGTERM/SIGINT, how long running duties may finish.
    shutdown_grace_seconds: float = 30.0
    # -- recruitment (issue 9) --
    #: Period of the recruit duty (recruit, reuse, destroy idle, start cloud operations).
    recruit_seconds: float = 10.0
    #: A recruited worker with nothing to do for this long is destroyed.
    idle_grace_seconds: float = 120.0
    #: An instance whose agent has not registered this long after its creation is
    #: destroyed (a machine that failed to boot or to install scitq).
    boot_timeout_seconds: float = 900.0
    #: Cloud operations run at once (threads; provider calls are slow).
    operation_threads: int = 4
    #: Attempts of an operation that fails transiently, and the first back-off (doubled
    #: after each failure).
    operation_attempts: int = 3
    operation_retry_seconds: float = 10.0
    #: After a failed deploy, a recruiter waits this long (doubled per failure in a row,
    #: at most an hour) before it deploys again.
    deploy_backoff_seconds: float = 60.0
    #: The database address cloud agents connect to, without credentials (each gets its
    #: own role); None: the scheduler's own address.
    agent_database_url: str | None = None
    #: Where the scheduler serves the wheel of its own scitq to the instances it recruits
    #: (``host:port``, e.g. ``0.0.0.0:8470``); None: no wheel server.
    wheel_listen: str | None = None
    #: The base URL instances download it from (``http://<an address of this machine they
    #: reach>:<port>``); None: ``http://<wheel_listen>``.
    wheel_url: str | None = None
    #: The wheel to serve (it must be of the running version); None: built from the
    #: source tree scitq runs from (a development install).
    agent_wheel: Path | None = None
    #: Read from ``[scheduler.local]`` and ``[scheduler.openstack]``.
    providers: ProviderSettings = field(
        default_factory=lambda: ProviderSettings(), metadata=NOT_A_KEY
    )


def scheduler_settings(
    env: Mapping[str, str], file: Mapping[str, Any], data_dir: Path | None = None
) -> SchedulerSettings:
    """The ``[scheduler]`` table (and ``[scheduler.local]``, ``[scheduler.openstack]``),
    each key overridden by ``SCITQ_SCHEDULER_<KEY>`` (``SCITQ_LOCAL_<KEY>``,
    ``SCITQ_OPENSTACK_<KEY>`` for the providers). Unknown keys are errors.

    OpenStack credentials are never read from scitq's variables: name a cloud of
    ``clouds.yaml`` (``cloud``), or give ``[scheduler.openstack.auth]``.

    Args:
        env: the environment variables.
        file: the parsed configuration file.
        data_dir: the local state directory (``[scheduler.local] state_dir`` defaults to
            ``<data_dir>/local-agents``); None: the default one.
    """
    return read_scheduler_settings(ConfigSource(env, file), data_dir)


def read_scheduler_settings(source: ConfigSource, data_dir: Path | None) -> SchedulerSettings:
    """`scheduler_settings` from a `ConfigSource` (which names the file in errors)."""
    values = source.read(
        SchedulerSettings,
        "scheduler",
        env_prefix="SCITQ_SCHEDULER_",
        subsections=("local", "openstack", "providers"),
    )
    local = source.read(LocalProviderSettings, "scheduler.local", env_prefix="SCITQ_LOCAL_")
    if "state_dir" not in local and data_dir is not None:
        local["state_dir"] = data_dir / "local-agents"
    openstack: OpenStackSettings | None = None
    if source.has_table("scheduler.openstack") or source.environ.get("SCITQ_OPENSTACK_CLOUD"):
        openstack = OpenStackSettings(
            **_openstack(source, "scheduler.openstack", "SCITQ_OPENSTACK_")
        )
    named = {
        name: _named_provider(source, name, data_dir)
        for name in source.table("scheduler.providers")
    }
    providers = ProviderSettings(
        local=LocalProviderSettings(**local), openstack=openstack, named=named
    )
    return SchedulerSettings(providers=providers, **values)


def _openstack(
    source: ConfigSource, section: str, env_prefix: str | None, cls: type = OpenStackSettings
) -> dict[str, Any]:
    """The keys of an OpenStack provider's table, ``auth`` (its sub-table) included."""
    values = source.read(cls, section, env_prefix=env_prefix, subsections=("auth",))
    auth = source.read(_OpenStackAuthKeys, f"{section}.auth", env_prefix=None)
    if not values.get("cloud") and not auth.get("auth_url"):
        raise ConfigError(
            f"{source.name}: [{section}] needs cloud (a name in clouds.yaml) "
            f"or [{section}.auth] with auth_url"
        )
    return {**values, "auth": auth}


@dataclass(frozen=True, slots=True, kw_only=True)
class _NamedLocalKeys(LocalProviderSettings):
    """The keys of ``[scheduler.providers.<name>]`` of kind ``local``."""

    kind: str = ""
    regions: tuple[str, ...] = ()
    flavors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _NamedOpenStackKeys(OpenStackSettings):
    """The keys of ``[scheduler.providers.<name>]`` of kind ``openstack``."""

    kind: str = ""
    regions: tuple[str, ...] = ()
    flavors: tuple[str, ...] = ()


def _named_provider(
    source: ConfigSource, name: str, data_dir: Path | None
) -> NamedProviderSettings:
    """``[scheduler.providers.<name>]``: its kind, regions, flavors and its kind's keys."""
    section = f"scheduler.providers.{name}"
    kind = source.table(section).get("kind")
    if not _PROVIDER_NAME.match(name) or name in ("local", "openstack", "fake"):
        raise ConfigError(
            f"{source.name}: [{section}]: a provider name is lower-case letters, digits, "
            "- and _, and not local, openstack or fake"
        )
    if kind not in PROVIDER_KINDS:
        raise ConfigError(
            f"{source.name}: [{section}] kind must be one of {', '.join(PROVIDER_KINDS)}, "
            f"not {kind!r}"
        )
    if kind == "local":
        values = source.read(_NamedLocalKeys, section, env_prefix=None)
    else:
        values = _openstack(source, section, None, _NamedOpenStackKeys)
    own = {key: values.pop(key) for key in ("kind", "regions", "flavors") if key in values}
    if kind == "local":
        if "state_dir" not in values:  # its own: local providers must not see each other's
            values["state_dir"] = (data_dir or default_data_dir()) / f"local-agents-{name}"
        return NamedProviderSettings(name=name, local=LocalProviderSettings(**values), **own)
    return NamedProviderSettings(name=name, openstack=OpenStackSettings(**values), **own)
