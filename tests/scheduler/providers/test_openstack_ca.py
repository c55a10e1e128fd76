"""The OpenStack provider's cloud-init carries the CA of a database served over TLS
(issue 15, point 6): the agent's URL names it at the path cloud-init writes it to."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import yaml
from psycopg.conninfo import conninfo_to_dict

from scitq.config import OpenStackSettings
from scitq.embedded.tls import ensure_certificates
from scitq.scheduler.providers.base import InstanceSpec
from scitq.scheduler.providers.cloudinit import CA_PATH, Bootstrap
from scitq.scheduler.providers.cloudinit import user_data as cloud_config

SPEC = InstanceSpec(
    name="scitq-7", batch="rnaseq", concurrency=4, prefetch=1, flavor=None, image=None,
    region=None, database_url="host=db.example user=scitq_worker_scitq-7 password=s3cret",
)  # fmt: skip


def user_data(spec: InstanceSpec) -> str:
    bootstrap = Bootstrap(version="9.9", wheel_url="http://sched:8470/w.whl", wheel_sha256="ab")
    return cloud_config(spec, bootstrap, OpenStackSettings(cloud="lab"))


def _files(document: str) -> dict[str, dict[str, str]]:
    assert document.startswith("#cloud-config\n")
    return {entry["path"]: entry for entry in yaml.safe_load(document)["write_files"]}


def _agent_url(files: dict[str, dict[str, str]]) -> dict[str, str]:
    lines = files["/etc/scitq/agent.env"]["content"].splitlines()
    name, value = lines[0].split("=", 1)
    assert name == "SCITQ_DATABASE_URL"
    return conninfo_to_dict(shlex.split(value)[0])  # type: ignore[return-value]


def test_the_ca_named_by_the_url_travels_in_the_user_data(tmp_path: Path) -> None:
    ca = ensure_certificates(tmp_path / "tls", ["db.example"]).ca
    assert ca is not None
    url = (f"postgresql://scitq_worker_scitq-7:s3cret@db.example:5432/scitq"
           f"?sslmode=verify-full&sslrootcert={ca}")  # fmt: skip
    files = _files(user_data(dataclasses.replace(SPEC, database_url=url)))
    assert files[CA_PATH]["content"].strip() == ca.read_text().strip()
    assert files[CA_PATH]["permissions"] == "0644"
    params = _agent_url(files)
    assert params["sslrootcert"] == CA_PATH and params["sslmode"] == "verify-full"
    assert (params["host"], params["user"], params["password"]) == (
        "db.example", "scitq_worker_scitq-7", "s3cret",
    )  # fmt: skip


def test_without_a_ca_file_the_user_data_is_unchanged() -> None:
    files = _files(user_data(SPEC))
    assert CA_PATH not in files
    assert _agent_url(files) == conninfo_to_dict(SPEC.database_url)
    system = dataclasses.replace(SPEC, database_url=SPEC.database_url + " sslrootcert=system")
    assert CA_PATH not in _files(user_data(system))
