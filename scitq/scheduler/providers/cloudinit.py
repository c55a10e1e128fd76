"""The cloud-init document that turns a fresh cloud machine into a scitq worker.

It is what an instance gets as its user data, whole: what it installs, the files it
writes and the service it starts. Cloud-init (on the machine) then

1. installs the Debian/Ubuntu packages asked for (``python3-venv``, and ``podman`` or
   ``docker.io`` when the provider's ``container_runtime`` says so);
2. writes ``/etc/scitq/agent.env`` (mode 0600): the agent's database URL with the password
   of the worker's own login role, and the storage credentials the scheduler forwards
   (``SCITQ_S3_*``, ``SCITQ_FTP_*``); the database's CA (``/etc/scitq/ca.crt``, when the
   URL names one); the rclone configuration (``/etc/scitq/rclone.conf``, 0600, when the
   scheduler has one); the install script and the agent's systemd unit;
3. runs the install script: a virtual environment in ``/opt/scitq`` holding exactly the
   scitq the scheduler runs, either the wheel the scheduler serves (downloaded, its
   sha256 checked before pip sees it) or ``scitq==<version>`` from a configured index,
   then ``scitq --version`` must print that version;
4. starts ``scitq agent`` as the service ``scitq-agent``.

Secrets travel only in ``write_files`` of mode 0600: nothing here is logged, and the
scheduler keeps no copy (the database holds the role's SCRAM verifier only).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from scitq.config import OpenStackSettings, TransferSettings
from scitq.scheduler.providers.base import InstanceSpec, ProviderError

#: Where cloud-init puts the CA the agent verifies the database with.
CA_PATH = "/etc/scitq/ca.crt"
#: The agent's environment file (database URL and storage credentials), mode 0600.
ENV_PATH = "/etc/scitq/agent.env"
#: The rclone configuration forwarded to the instance, mode 0600.
RCLONE_PATH = "/etc/scitq/rclone.conf"
INSTALL_PATH = "/etc/scitq/install-scitq.sh"
UNIT_PATH = "/etc/systemd/system/scitq-agent.service"
#: The virtual environment scitq is installed in.
VENV = "/opt/scitq"
#: The Debian package of each container runtime a provider may ask for.
RUNTIME_PACKAGES = {"podman": "podman", "docker": "docker.io"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Bootstrap:
    """What the scheduler gives every instance besides its spec.

    Attributes:
        version: the scitq version the scheduler runs, which instances must install.
        wheel_url: where instances download its wheel (the scheduler's wheel server);
            None: no wheel is served.
        wheel_sha256: that wheel's sha256, checked on the instance before installing.
        environment: variables for the agent (storage credentials): they go to the 0600
            environment file only.
        rclone_config: the text of an rclone configuration for the agent, or None.
    """

    version: str
    wheel_url: str | None = None
    wheel_sha256: str | None = None
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    rclone_config: str | None = field(default=None, repr=False)


def forwarded_credentials(transfer: TransferSettings) -> tuple[dict[str, str], str | None]:
    """The storage settings of this scheduler an agent needs, as the ``SCITQ_*``
    variables the agent reads, and the text of the rclone configuration (or None)."""
    env: dict[str, str] = {}
    s3, ftp = transfer.s3, transfer.ftp
    for name, value in (
        ("SCITQ_S3_ENDPOINT_URL", s3.endpoint_url), ("SCITQ_S3_REGION", s3.region),
        ("SCITQ_S3_ACCESS_KEY_ID", s3.access_key_id),
        ("SCITQ_S3_SECRET_ACCESS_KEY", s3.secret_access_key),
        ("SCITQ_FTP_USER", ftp.user), ("SCITQ_FTP_PASSWORD", ftp.password),
    ):  # fmt: skip
        if value:
            env[name] = value
    rclone = None
    path = transfer.rclone.config
    if path is not None and path.is_file():
        rclone = path.read_text(encoding="utf-8")
        env["SCITQ_RCLONE_CONFIG"] = RCLONE_PATH
    return env, rclone


def _with_ca(database_url: str) -> tuple[str, str | None]:
    """The agent's URL and the CA it names (``sslrootcert``, read here), moved to
    `CA_PATH` on the instance; the URL as is when it names no CA file."""
    params = conninfo_to_dict(database_url)
    root = params.get("sslrootcert")
    if not isinstance(root, str) or root == "system" or not os.path.isfile(root):
        return database_url, None
    with open(root, encoding="ascii") as stream:
        pem = stream.read()
    return make_conninfo(database_url, sslrootcert=CA_PATH), pem


def _env_line(name: str, value: str) -> str:
    # systemd's EnvironmentFile takes one single-quoted value per line, no concatenation
    if "'" in value or "\n" in value or "\\" in value:
        raise ProviderError(
            f"{name} holds a quote, a backslash or a newline: it cannot be passed to the agent",
            "config",
        )
    return f"{name}='{value}'"


_FETCH = """\
import hashlib, sys, urllib.request
url, digest, target = sys.argv[1:4]
data = urllib.request.urlopen(url, timeout=120).read()
found = hashlib.sha256(data).hexdigest()
if found != digest:
    sys.exit(f"scitq-install: {url} has sha256 {found}, the scheduler announced {digest}")
open(target, "wb").write(data)
"""


def install_script(bootstrap: Bootstrap, settings: OpenStackSettings) -> str:
    """The shell script that installs exactly ``bootstrap.version`` in `VENV`.

    Raises:
        ProviderError: (``config``) neither a served wheel nor an index to install from.
    """
    version = bootstrap.version
    pip = [f"{VENV}/bin/python", "-m", "pip", "install", "--quiet"]
    if settings.pip_index_url:
        pip += ["--index-url", settings.pip_index_url]
    lines = ["#!/bin/sh", f"# installs scitq {version} for its agent (written by scitq)",
             "set -eu", f"python3 -m venv {VENV}"]  # fmt: skip
    if settings.install_command:
        lines.append(settings.install_command)
    elif settings.install_from == "index":
        lines.append(shlex.join([*pip, f"scitq=={version}"]))
    else:
        if bootstrap.wheel_url is None or bootstrap.wheel_sha256 is None:
            raise ProviderError(
                f"instances install scitq {version} from the scheduler's wheel server, which "
                "is off: set [scheduler] wheel_listen and wheel_url, or install_from = "
                '"index" with pip_index_url in the provider\'s table',
                "config",
            )
        wheel = f"/var/tmp/{bootstrap.wheel_url.rsplit('/', 1)[-1]}"
        fetch = ["python3", "-c", _FETCH, bootstrap.wheel_url, bootstrap.wheel_sha256, wheel]
        lines += [shlex.join(fetch), shlex.join([*pip, wheel])]
    lines += [
        f'found="$({VENV}/bin/scitq --version)"',
        f'if [ "$found" != "scitq {version}" ]; then',
        f'    echo "scitq-install: installed $found, the scheduler runs scitq {version}" >&2',
        "    exit 1",
        "fi",
        f"ln -sf {VENV}/bin/scitq /usr/local/bin/scitq",
        f'echo "scitq-install: $found installed in {VENV}"',
    ]
    return "\n".join(lines) + "\n"


def _unit(spec: InstanceSpec) -> str:
    command = (
        f"{VENV}/bin/scitq agent --name {shlex.quote(spec.name)} "
        f"--batch {shlex.quote(spec.batch)} --concurrency {spec.concurrency} "
        f"--prefetch {spec.prefetch} --work-dir /var/lib/scitq/work"
    )
    return (
        "[Unit]\nDescription=scitq agent\nAfter=network-online.target\n"
        "Wants=network-online.target\n\n"
        f"[Service]\nEnvironmentFile={ENV_PATH}\nEnvironment=SCITQ_DATA_DIR=/var/lib/scitq\n"
        f"ExecStart={command}\nRestart=on-failure\nRestartSec=10\nKillMode=mixed\n"
        "TimeoutStopSec=90\n\n[Install]\nWantedBy=multi-user.target\n"
    )


def packages(settings: OpenStackSettings) -> list[str]:
    """The distribution packages the instance installs before scitq."""
    wanted = list(settings.packages)
    if settings.container_runtime is not None:
        wanted.append(RUNTIME_PACKAGES[settings.container_runtime])
    return list(dict.fromkeys(wanted))


def user_data(spec: InstanceSpec, bootstrap: Bootstrap, settings: OpenStackSettings) -> str:
    """The cloud-init document (``#cloud-config``) of an instance running ``spec``'s agent.

    Raises:
        ProviderError: (``config``) nothing to install scitq from, or a value that cannot
            be written to the environment file.
    """
    database_url, ca_pem = _with_ca(spec.database_url)
    env = {"SCITQ_DATABASE_URL": database_url}
    if settings.forward_credentials:
        env.update(bootstrap.environment)
    files: list[dict[str, Any]] = [
        {"path": ENV_PATH, "permissions": "0600", "owner": "root:root",
         "content": "".join(_env_line(k, v) + "\n" for k, v in env.items())},
        {"path": INSTALL_PATH, "permissions": "0700", "owner": "root:root",
         "content": install_script(bootstrap, settings)},
        {"path": UNIT_PATH, "permissions": "0644", "content": _unit(spec)},
    ]  # fmt: skip
    if ca_pem:
        files.append({"path": CA_PATH, "permissions": "0644", "content": ca_pem})
    if settings.forward_credentials and bootstrap.rclone_config is not None:
        files.append({"path": RCLONE_PATH, "permissions": "0600", "owner": "root:root",
                      "content": bootstrap.rclone_config})  # fmt: skip
    document: dict[str, Any] = {}
    wanted = packages(settings)
    if wanted:
        document["package_update"] = True
        document["packages"] = wanted
    document["write_files"] = files
    start = (
        f"sh {INSTALL_PATH} && systemctl daemon-reload && "
        "systemctl enable --now scitq-agent.service"
    )
    document["runcmd"] = [["sh", "-c", start]]
    return "#cloud-config\n" + str(
        yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)
    )


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Writes multi-line strings (files, scripts) as literal blocks, readable as is."""


def _text(dumper: Any, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)
