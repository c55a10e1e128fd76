"""A recruited instance's whole bootstrap, for real: the user data that the OpenStack
provider sends (the cloud API is a FAKE, tests/scheduler/providers/fake_openstack.py: no
cloud is reachable here) is booted by cloud-init in a local cloud image (Debian 12 with
systemd and cloud-init, run by podman with systemd as PID 1, NoCloud seed: see
tests/scheduler/cloud_image.py). Cloud-init installs the container runtime the provider
asks for (podman, from Debian's packages) and the scheduler's own scitq from its wheel
server (sha256 checked), writes the credentials, starts the agent as a systemd service;
the agent connects to ``scitq db serve`` over verified TLS with the CA of the user data
and its own role, registers, and runs a task that reads from and writes to S3 (moto)
with the forwarded credentials.

A second task runs in a container: the agent pulls its image on first use from a
registry (Debian's ``docker-registry`` on this machine, plain HTTP) into the podman that
cloud-init installed, and podman runs it nested in the booted container (which is
therefore privileged). What a lab's image would carry for its own registry is given to
the instance as files mounted into it: a ``registries.conf.d`` entry marking the test
registry insecure, and a ``containers.conf`` with this machine's limits
(tests/scheduler/cloud_image.py); its image store is a directory of the host, so that
podman's overlay driver does not stack on the outer container's overlay.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from scitq.config import SchedulerSettings
from scitq.db.recruitment import instance_link_workers, instance_list, instance_request
from scitq.db.task import task_get, task_submit
from scitq.embedded.server import EmbeddedServer
from scitq.embedded.serving import current_endpoint
from scitq.scheduler.operations import OperationRunner
from scitq.scheduler.providers.cloudinit import ENV_PATH
from scitq.scheduler.providers.openstack import OpenStackProvider
from scitq.scheduler.wheel_server import agent_bootstrap
from scitq.version import __version__
from tests.agent.test_containers import podman  # noqa: F401 (a fixture, for registry)
from tests.agent.test_image_pull import registry  # noqa: F401 (a fixture)
from tests.fixtures.servers import S3Server
from tests.integration.test_cli_db import (
    _free_port,
    _read_until,
    _scitq,
    embedded_env,  # noqa: F401 (a fixture)
)
from tests.scheduler.cloud_image import ensure_image, instance_mounts, podman_env
from tests.scheduler.providers.fake_openstack import FakeOpenStack
from tests.scheduler.providers.test_bootstrap import _all_rows
from tests.scheduler.providers.test_openstack import run_operations, settings_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

#: How long the instance may take from boot to its task's end (apt, pip, the agent).
BOOT_SECONDS = 300


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def served(embedded_env: dict[str, str]) -> Iterator[tuple[dict[str, str], str]]:  # noqa: F811
    """``scitq db serve`` on 127.0.0.1 over TLS: the environment and the admin conninfo."""
    env = {**embedded_env, "SCITQ_DB_PASSWORD": "serve-secret"}
    assert _scitq(env, "db", "upgrade").returncode == 0
    port = _free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "scitq", "db", "serve", "--listen", "127.0.0.1", "--port",
         str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        _read_until(serve, "press Ctrl-C", timeout=120)
        admin = EmbeddedServer(Path(env["SCITQ_DATA_DIR"])).ensure_running()
        yield env, admin
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=120)
        except subprocess.TimeoutExpired:
            serve.kill()


def _in_container(runtime: str, env: dict[str, str], name: str, command: str) -> str:
    done = subprocess.run(
        [runtime, "exec", name, "sh", "-c", command],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    return done.stdout + done.stderr


def test_a_recruited_instance_boots_installs_registers_and_runs_a_task(
    served: tuple[dict[str, str], str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    registry: str,  # noqa: F811
) -> None:
    runtime = shutil.which("podman")
    if runtime is None or os.geteuid() != 0:
        _unavailable("booting a cloud image needs root and podman (apt-get install podman)")
        return
    env, admin = served
    endpoint = current_endpoint(Path(env["SCITQ_DATA_DIR"]))
    assert endpoint is not None and endpoint.ca is not None
    caplog.set_level(logging.DEBUG)
    s3 = S3Server(_free_port(), tmp_path / "moto.log")
    cloud = FakeOpenStack().start()
    container = f"scitq-boot-{uuid.uuid4().hex[:8]}"
    pod_env = podman_env(tmp_path)
    settings = SchedulerSettings(
        agent_database_url=f"host=127.0.0.1 port={endpoint.port} dbname=scitq "
        f"sslmode=verify-full sslrootcert={endpoint.ca}",
        wheel_listen="127.0.0.1:0",  # a real cloud: the scheduler's address on the network
    )  # fmt: skip
    bootstrap, wheel_server = agent_bootstrap(settings, s3.transfer_settings(tmp_path))
    assert wheel_server is not None and wheel_server.wheel is not None
    runner = OperationRunner(
        settings,
        {"openstack": OpenStackProvider(
            settings_for(cloud, container_runtime="podman"), bootstrap=bootstrap
        )},
        admin,
    )  # fmt: skip
    try:
        try:
            image = ensure_image(runtime, wheel_server.wheel.path, pod_env)
        except RuntimeError as error:
            _unavailable(f"cannot build the cloud image: {error}")
        bucket = f"boot-{uuid.uuid4().hex[:8]}"
        s3.client().create_bucket(Bucket=bucket)
        s3.client().put_object(Bucket=bucket, Key="in/reads.txt", Body=b"acgt from s3\n")
        with psycopg.connect(admin, dbname="scitq", autocommit=True) as conn:
            (requested,) = instance_request(conn, "openstack", "cloud", 1, concurrency=1)
            run_operations(conn, runner)
            (body,) = cloud.created_bodies
            document = base64.b64decode(body["user_data"]).decode()
            task, boxed = task_submit(conn, "cloud", [{
                "name": "upper", "shell": True, "inputs": [f"s3://{bucket}/in/reads.txt"],
                "output": f"s3://{bucket}/out/",
                "command": "tr a-z A-Z < $INPUT/reads.txt > $OUTPUT/upper.txt; "
                           "cat $OUTPUT/upper.txt; scitq --version",
            }, {
                "name": "boxed", "shell": True, "inputs": [f"s3://{bucket}/in/reads.txt"],
                "output": f"s3://{bucket}/boxed/",
                "container": f"{registry}/scitq-busybox:1",
                "container_options": "--network=none",
                "command": "rev < /input/reads.txt > /output/reversed.txt; "
                           "cat /output/reversed.txt",
            }])  # fmt: skip

            # what a real instance gets: its user data and an identity, in a NoCloud seed
            seed = tmp_path / "seed"
            seed.mkdir()
            (seed / "user-data").write_text(document)
            server_id = next(iter(cloud.servers))
            (seed / "meta-data").write_text(
                f"instance-id: {server_id}\nlocal-hostname: {requested['name']}\n"
            )
            started = subprocess.run(
                [runtime, "run", "-d", "--name", container, "--systemd=always",
                 "--privileged", "--network=host",
                 "-v", f"{seed}:/var/lib/cloud/seed/nocloud:ro",
                 *instance_mounts(tmp_path / "instance", registry), image, "/sbin/init"],
                capture_output=True, text=True, timeout=120, env=pod_env,
            )  # fmt: skip
            assert started.returncode == 0, started.stderr
            deadline = time.monotonic() + BOOT_SECONDS
            found = boxed_found = None
            while time.monotonic() < deadline:
                found, boxed_found = task_get(conn, task["id"]), task_get(conn, boxed["id"])
                if all(t is not None and t["status"] in ("succeeded", "failed")
                       for t in (found, boxed_found)):  # fmt: skip
                    break
                time.sleep(2)
            log = _in_container(runtime, pod_env, container,
                                "tail -n 40 /var/log/cloud-init-output.log; "
                                "journalctl -u scitq-agent --no-pager | tail -n 40; "
                                # where a boot stalls: the jobs systemd waits on, and the
                                # module cloud-init was in
                                "systemctl list-jobs --no-pager; cloud-init status --long; "
                                "tail -n 25 /var/log/cloud-init.log")  # fmt: skip
            assert found is not None and found["status"] == "succeeded", log
            boxed_log = "".join(row[0] for row in conn.execute(
                "SELECT text FROM scitq.task_log WHERE task_id = %s", (boxed["id"],)
            ))  # fmt: skip
            assert boxed_found is not None and boxed_found["status"] == "succeeded", (
                f"{boxed_log}\n{log}"
            )

            # the instance: exactly the scheduler's scitq, credentials readable by root only
            assert f"scitq {__version__} installed in /opt/scitq" in log, log
            assert _in_container(runtime, pod_env, container, "stat -c %a " + ENV_PATH) == "600\n"
            # the container runtime the provider asked for, installed by cloud-init
            installed = _in_container(runtime, pod_env, container, "podman --version")
            assert "podman version" in installed
            assert "scitq " + __version__ in _in_container(
                runtime, pod_env, container, "/opt/scitq/bin/scitq --version"
            )
            # registered as its instance's worker, with its own role, over verified TLS
            linked = instance_link_workers(conn)
            assert [row["name"] for row in linked] == [requested["name"]]
            (instance,) = instance_list(conn)
            assert instance["status"] == "active"
            worker = conn.execute(
                "SELECT login_role FROM scitq.worker WHERE name = %s", (requested["name"],)
            ).fetchone()
            assert worker is not None and worker[0].startswith("scitq_worker_")
            # its task read and wrote S3 with the forwarded credentials
            out = s3.client().get_object(Bucket=bucket, Key="out/upper.txt")["Body"].read()
            assert out == b"ACGT FROM S3\n"
            # the container task: its image pulled on first use, its output uploaded
            assert f"pulled container image {registry}/scitq-busybox:1" in boxed_log
            reversed_ = s3.client().get_object(Bucket=bucket, Key="boxed/reversed.txt")
            assert reversed_["Body"].read() == b"3s morf tgca\n"
            output = "".join(
                row[0]
                for row in conn.execute(
                    "SELECT text FROM scitq.task_log WHERE task_id = %s", (task["id"],)
                )
            )
            assert "ACGT FROM S3" in output and f"scitq {__version__}" in output

            # no secret in the scheduler's logs, the database's rows, cloud-init's logs
            files = {e["path"]: e for e in yaml.safe_load(document)["write_files"]}
            password = files[ENV_PATH]["content"].split("password=", 1)[1].split()[0]
            secrets = [password.strip("'"), s3.s3_settings().secret_access_key or "?"]
            stored = _all_rows(conn)
            machine_logs = _in_container(
                runtime, pod_env, container, "cat /var/log/cloud-init*.log; journalctl --no-pager"
            )
            for secret in secrets:
                assert secret not in caplog.text
                assert secret not in stored
                assert secret not in machine_logs
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run([runtime or "podman", "rm", "-f", "-t", "5", container],
                           capture_output=True, timeout=120, env=pod_env)  # fmt: skip
        runner.shutdown()
        wheel_server.stop()
        cloud.stop()
        s3.stop()
