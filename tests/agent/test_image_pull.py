"""Container images pulled on first use, from a real local registry.

A session fixture starts Debian's ``docker-registry`` (the distribution registry) on a
free loopback port and pushes the locally built busybox image to it. Each test's agent
uses a podman storage of its own (``CONTAINERS_STORAGE_CONF``: a fresh graph root, as
on a new worker) and a ``registries.conf`` marking the registry insecure (plain HTTP),
as an operator would for a private registry without TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scitq.agent.containers import Unrunnable
from scitq.agent.images import ImagePuller
from scitq.db.task import task_submit
from scitq.states import FailureClass
from tests.agent.test_agent import log_text
from tests.agent.test_containers import IMAGE, podman, unavailable  # noqa: F401 (fixture)
from tests.fixtures.servers import free_port

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

PULLED = "pulled container image"


REGISTRY_USER, REGISTRY_PASSWORD = "lab", "registry-secret-1234"


@contextlib.contextmanager
def running_registry(
    root: Path, runtime: str, image: str, users: str | None = None
) -> Iterator[str]:
    """Run ``docker-registry`` in ``root`` (with htpasswd ``users`` if given) holding
    ``image`` (pushed from the local test image); yields ``localhost:PORT``."""
    binary = shutil.which("docker-registry")
    if binary is None:
        unavailable("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    config = (
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    if users is not None:
        (root / "htpasswd").write_text(users)
        config += f"auth:\n  htpasswd:\n    realm: scitq-test\n    path: {root / 'htpasswd'}\n"
    (root / "config.yml").write_text(config)
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([str(binary), "serve", str(root / "config.yml")], stdout=log,
                               stderr=log)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # 401: it answers, and wants credentials
            except OSError as exc:
                if time.monotonic() > deadline or process.poll() is not None:
                    said = (root / "registry.log").read_text()
                    raise AssertionError(f"registry did not start: {said}") from exc
                time.sleep(0.2)
        address = f"localhost:{port}"
        push = [runtime, "push", "--quiet", "--tls-verify=false", IMAGE, f"{address}/{image}"]
        if users is not None:
            push[2:2] = ["--creds", f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"]
        pushed = subprocess.run(push, capture_output=True, text=True, timeout=120)
        assert pushed.returncode == 0, pushed.stderr
        yield address
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, podman: str) -> Iterator[str]:  # noqa: F811
    """``localhost:PORT`` of a running registry holding ``scitq-busybox:1``."""
    with running_registry(tmp_path_factory.mktemp("registry"), podman, "scitq-busybox:1") as at:
        yield at


@pytest.fixture(scope="session")
def private_registry(tmp_path_factory: pytest.TempPathFactory, podman: str) -> Iterator[str]:  # noqa: F811
    """A registry that wants a password (htpasswd, bcrypt), holding ``private:1``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # bcrypt hashes, as the registry's htpasswd wants (no htpasswd tool)

        hashed = crypt.crypt(REGISTRY_PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))
    root = tmp_path_factory.mktemp("private-registry")
    with running_registry(root, podman, "private:1", f"{REGISTRY_USER}:{hashed}\n") as at:
        yield at


@pytest.fixture
def fresh_podman(tmp_path: Path, registry: str, private_registry: str) -> dict[str, str]:
    """The environment of an agent whose podman has an empty image store."""
    storage = tmp_path / "storage"
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{storage / "graph"}"\n'
        f'runroot = "{storage / "run"}"\n'
    )
    registries = tmp_path / "registries.conf"
    registries.write_text("".join(
        f'[[registry]]\nlocation = "{address}"\ninsecure = true\n'
        for address in (registry, private_registry)
    ))  # fmt: skip
    return {"CONTAINERS_STORAGE_CONF": str(conf), "CONTAINERS_REGISTRIES_CONF": str(registries)}


def _executions(conn: psycopg.Connection[Any], batch: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT e.task_id, e.status, e.failure_class, e.failure_reason, "
        "e.download_started_at IS NOT NULL "
        "AND e.download_started_at <= coalesce(e.run_started_at, e.finished_at) "
        "FROM scitq.execution e JOIN scitq.task t ON t.id = e.task_id "
        "JOIN scitq.batch b ON b.id = t.batch_id WHERE b.name = %s ORDER BY e.id",
        (batch,),
    ).fetchall()  # fmt: skip


def test_first_use_pulls_once_for_concurrent_tasks_in_the_download_phase(
    conn: psycopg.Connection[Any], start_agent: Any, registry: str, fresh_podman: dict[str, str],
    podman: str,  # noqa: F811
) -> None:  # fmt: skip
    image = f"{registry}/scitq-busybox:1"
    listed = subprocess.run([podman, "image", "exists", image], env=_env(fresh_podman))
    assert listed.returncode == 1  # the worker's store is empty
    tasks = task_submit(
        conn, "pull",
        [{"command": "echo ran in $INPUT", "shell": True, "container": image, "retries": 0}] * 2,
    )  # fmt: skip
    agent = start_agent("-b", "pull", "-c", "2", "--drain", env=fresh_podman)
    assert agent.wait(180) == 0, agent.log()
    rows = _executions(conn, "pull")
    assert [row[1] for row in rows] == ["succeeded", "succeeded"], rows
    assert all(row[4] for row in rows)  # each went through its download phase
    logs = [log_text(conn, task["id"]) for task in tasks]
    assert all("ran in /input" in text for text in logs)
    pulled = [text for text in logs if f"{PULLED} {image} in " in text]
    assert len(pulled) == 1, logs  # one pull; the other task waited for it
    assert (
        subprocess.run([podman, "image", "exists", image], env=_env(fresh_podman)).returncode == 0
    )


def test_a_bad_image_fails_with_one_clear_line(
    conn: psycopg.Connection[Any], start_agent: Any, registry: str, fresh_podman: dict[str, str]
) -> None:
    image = f"{registry}/no-such-image:1"
    task_submit(conn, "bad", [{"command": "true", "container": image, "retries": 0}])
    agent = start_agent("-b", "bad", "--drain", env=fresh_podman)
    assert agent.wait(120) == 0, agent.log()
    ((_, status, failure_class, reason, downloaded),) = _executions(conn, "bad")
    assert (status, failure_class, downloaded) == ("failed", FailureClass.DOWNLOAD, True)
    assert reason.startswith(f"cannot pull container image {image!r} with ")
    assert "\n" not in reason


def test_no_pull_refuses_a_missing_image(
    conn: psycopg.Connection[Any], start_agent: Any, registry: str, fresh_podman: dict[str, str]
) -> None:
    image = f"{registry}/scitq-busybox:1"
    task_submit(conn, "nopull", [{"command": "true", "container": image, "retries": 0}])
    agent = start_agent("-b", "nopull", "--drain", "--no-pull", env=fresh_podman)
    assert agent.wait(120) == 0, agent.log()
    ((_, status, failure_class, reason, _),) = _executions(conn, "nopull")
    assert (status, failure_class) == ("failed", FailureClass.DOWNLOAD)
    assert "pulling is off (--no-pull)" in reason


def test_a_runtime_that_does_not_answer_is_a_runtime_failure(tmp_path: Path) -> None:
    # a docker client without its daemon (what the real client prints, then exit code 1):
    # a fake at the one boundary a test machine cannot offer, a stopped Docker daemon
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
        " Is the docker daemon running?' >&2\nexit 1\n"
    )
    docker.chmod(0o755)
    found = asyncio.run(ImagePuller(str(docker)).ensure("alpine"))
    assert isinstance(found, Unrunnable)
    assert found.failure_class == FailureClass.RUNTIME
    assert "daemon running on this worker?" in found.reason
    missing = asyncio.run(ImagePuller("/nonexistent/podman").ensure("alpine"))
    assert isinstance(missing, Unrunnable) and missing.failure_class == FailureClass.RUNTIME


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    return {**os.environ, **extra}


def test_a_private_registry_is_pulled_from_with_the_agents_auth_file(
    conn: psycopg.Connection[Any], start_agent: Any, private_registry: str,
    fresh_podman: dict[str, str], tmp_path: Path, podman: str,  # noqa: F811
) -> None:  # fmt: skip
    image = f"{private_registry}/private:1"
    auth_file = tmp_path / "auth.json"  # what an operator does once per worker
    login = subprocess.run(
        [podman, "login", "--tls-verify=false", "--authfile", str(auth_file),
         "--username", REGISTRY_USER, "--password-stdin", private_registry],
        input=REGISTRY_PASSWORD, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    task = {"command": "echo private", "shell": True, "container": image, "retries": 0}
    (refused,) = task_submit(conn, "anonymous", [task])
    agent = start_agent("-b", "anonymous", "--drain", env=fresh_podman)
    assert agent.wait(120) == 0, agent.log()
    ((_, status, failure_class, reason, _),) = _executions(conn, "anonymous")
    assert (status, failure_class) == ("failed", FailureClass.DOWNLOAD)
    assert reason.startswith(f"cannot pull container image {image!r}")
    (allowed,) = task_submit(conn, "private", [task])
    agent = start_agent("-b", "private", "--drain", "--registry-auth-file", str(auth_file),
                        env=fresh_podman)  # fmt: skip
    assert agent.wait(120) == 0, agent.log()
    assert [row[1] for row in _executions(conn, "private")] == ["succeeded"]
    assert "private" in log_text(conn, allowed["id"])
    # the credentials stay on the worker: in no row of the database, in no agent log
    dump = conn.execute(
        "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM scitq.execution) t"
    ).fetchone()[0] + "".join(log_text(conn, row["id"]) for row in (refused, allowed))
    assert REGISTRY_PASSWORD not in dump and REGISTRY_PASSWORD not in agent.log()
