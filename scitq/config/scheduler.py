"""``[scheduler]``, ``[scheduler.local]``, ``[scheduler.openstack]``: how the scheduler
runs and which providers it recruits from (``SCITQ_SCHEDULER_*``, ``SCITQ_LOCAL_*``,
``SCITQ_OPENSTACK_*``; docs/operations.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scitq.config.paths import default_data_dir
from scitq.config.source import NOT_A_KEY, ConfigSource
from scitq.errors import ConfigError


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
        install_command: run by cloud-init to install scitq on the server.
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
    install_command: str = "python3 -m pip install --break-system-packages scitq"
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSettings:
    """The providers the scheduler may use: ``local`` always, ``openstack`` when set."""

    local: LocalProviderSettings = field(default_factory=LocalProviderSettings)
    openstack: OpenStackSettings | None = None


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
    #: Delete the output of executions finished more than this many days ago.
    output_retention_days: float | None = None
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
        subsections=("local", "openstack"),
    )
    local = source.read(LocalProviderSettings, "scheduler.local", env_prefix="SCITQ_LOCAL_")
    if "state_dir" not in local and data_dir is not None:
        local["state_dir"] = data_dir / "local-agents"
    openstack: OpenStackSettings | None = None
    if source.has_table("scheduler.openstack") or source.environ.get("SCITQ_OPENSTACK_CLOUD"):
        os_values = source.read(
            OpenStackSettings,
            "scheduler.openstack",
            env_prefix="SCITQ_OPENSTACK_",
            subsections=("auth",),
        )
        auth = source.read(_OpenStackAuthKeys, "scheduler.openstack.auth", env_prefix=None)
        if not os_values.get("cloud") and not auth.get("auth_url"):
            raise ConfigError(
                f"{source.name}: [scheduler.openstack] needs cloud (a name in clouds.yaml) "
                "or [scheduler.openstack.auth] with auth_url"
            )
        openstack = OpenStackSettings(auth=auth, **os_values)
    providers = ProviderSettings(local=LocalProviderSettings(**local), openstack=openstack)
    return SchedulerSettings(providers=providers, **values)
