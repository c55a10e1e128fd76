"""Containers through real podman, with a busybox image built locally (no registry).

The image is built by ``images/build-busybox.sh`` when missing. On machines that forbid
raising resource limits (no CAP_SYS_RESOURCE: podman's default ``nofile``/``nproc``
limits cannot be set) or that mix cgroup v1 and v2 (crun refuses), the session points
``CONTAINERS_CONF`` at a configuration with the current limits and runc; a machine
where the default works keeps it. Without podman the tests are skipped, or fail under
``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scitq.agent import containers
from scitq.agent.process import CommandResult, CommandSpec, RunningCommand
from tests.agent.running import Collected, execute

IMAGE = "scitq-test-busybox"
BUILD_SCRIPT = Path(__file__).parent / "images" / "build-busybox.sh"
LABEL_FILTER = f"label={containers.CONTAINER_LABEL}"

pytestmark = pytest.mark.timeout(60)


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def probe(podman: str) -> str | None:
    """Why podman cannot run the test image here, or ``None`` if it can."""
    run = [podman, "run", "--rm", "--pull=never", IMAGE, "true"]
    done = subprocess.run(run, capture_output=True, text=True, timeout=60)
    return None if done.returncode == 0 else done.stderr.strip() or f"exit {done.returncode}"


def restricted_machine_conf() -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lines = ["[containers]", f'default_ulimits = ["nofile={soft}:{hard}", "nproc=4096:4096"]']
    if shutil.which("runc"):
        lines += ["[engine]", 'runtime = "runc"']
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = shutil.which("podman")
    if path is None:
        unavailable("podman is not installed (apt-get install podman runc busybox-static)")
        raise AssertionError  # unreachable: skip or fail raised
    saved = os.environ.get("CONTAINERS_CONF")
    exists = subprocess.run([path, "image", "exists", IMAGE], capture_output=True)
    if exists.returncode != 0:
        build = subprocess.run(
            [str(BUILD_SCRIPT), path, IMAGE], capture_output=True, text=True, timeout=120
        )
        if build.returncode != 0:
            unavailable(f"cannot build the test image {IMAGE}: {build.stderr.strip()}")
    problem = probe(path)
    if problem is not None:
        conf = tmp_path_factory.mktemp("podman") / "containers.conf"
        conf.write_text(restricted_machine_conf())
        os.environ["CONTAINERS_CONF"] = str(conf)
        second = probe(path)
        if second is not None:
            unavailable(f"podman cannot run {IMAGE}: {problem}; with {conf}: {second}")
    yield path
    if saved is None:
        os.environ.pop("CONTAINERS_CONF", None)
    else:
        os.environ["CONTAINERS_CONF"] = saved


def our_containers(podman: str) -> list[str]:
    listed = subprocess.run(
        [podman, "ps", "--all", "--format", "{{.Names}}", "--filter", LABEL_FILTER],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


@pytest.fixture
def work_dir(tmp_path: Path, podman: str) -> Iterator[Path]:
    for folder in ("input", "output", "resource", "tmp"):
        (tmp_path / folder).mkdir()
    yield tmp_path
    assert our_containers(podman) == []  # every run removed its container


def container_spec(work_dir: Path, command: str, **options: object) -> CommandSpec:
    options.setdefault("shell", True)
    options.setdefault("env", {})
    options.setdefault("cpu", 1)
    options.setdefault("container", IMAGE)
    options.setdefault("container_runtime", "podman")
    return CommandSpec(command=command, work_dir=work_dir, **options)  # type: ignore[arg-type]


def test_runs_with_the_work_folders_mounted(work_dir: Path) -> None:
    (work_dir / "input" / "data.txt").write_text("hello from the host\n")
    command = (
        "cat /input/data.txt > /output/copy.txt; echo written > $OUTPUT/new.txt; "
        "echo $INPUT $OUTPUT $RESOURCE $TEMP $CPU $SCITQ_TASK_ID; exit 5"
    )
    result, out = execute(container_spec(work_dir, command, env={"SCITQ_TASK_ID": "7"}))
    assert result.return_code == 5
    assert result.failure_class == "exit"
    assert out.text() == "/input /output /resource /tmp 1 7\n"
    assert (work_dir / "output" / "copy.txt").read_text() == "hello from the host\n"
    assert (work_dir / "output" / "new.txt").read_text() == "written\n"
    assert result.wall_seconds > 0


def test_resource_is_read_only(work_dir: Path) -> None:
    (work_dir / "resource" / "ref.txt").write_text("reference")
    command = "cat /resource/ref.txt; touch /resource/new"
    result, out = execute(container_spec(work_dir, command))
    assert out.text() == "reference"
    assert result.return_code != 0
    assert "Read-only" in out.text("stderr")
    assert not (work_dir / "resource" / "new").exists()


def test_env_values_are_passed_but_not_on_the_command_line(work_dir: Path) -> None:
    secret = "s3cr3t value with spaces"
    result, out = execute(container_spec(work_dir, 'echo "[$TOKEN]"', env={"TOKEN": secret}))
    assert result.return_code == 0
    assert out.text() == f"[{secret}]\n"
    arguments = containers.run_arguments(
        "podman",
        name="scitq-x",
        image=IMAGE,
        command="true",
        shell=True,
        work_dir=work_dir,
        cpu=1,
        env_names=["TOKEN"],
        options=None,
    )
    assert "TOKEN" in arguments
    assert not any(secret in argument for argument in arguments)


def test_exec_command_and_container_options(work_dir: Path) -> None:
    spec = container_spec(
        work_dir, """printf '%s|' "a  b" $HOME""", shell=False, container_options="--env HOME=/x"
    )
    result, out = execute(spec)
    assert result.return_code == 0
    assert out.text() == "a  b|$HOME|"


def test_missing_image_is_a_clear_failure(work_dir: Path) -> None:
    result, _ = execute(container_spec(work_dir, "true", container="scitq-no-such-image"))
    assert result.return_code is None
    assert result.failure_class == "download"  # as with --no-pull in the agent
    assert result.failure_reason is not None
    assert "scitq-no-such-image" in result.failure_reason
    assert "pull or load it on the worker first" in result.failure_reason


def test_missing_runtime_is_a_clear_failure(work_dir: Path) -> None:
    spec = container_spec(work_dir, "true", container_runtime="/nonexistent/podman")
    result, _ = execute(spec)
    assert result.return_code is None
    assert result.failure_class == "runtime"
    assert result.failure_reason is not None
    assert "no container runtime found" in result.failure_reason


def test_kill_signal_stops_the_container(work_dir: Path) -> None:
    async def during(running: RunningCommand, out: Collected) -> None:
        await asyncio.sleep(1.5)
        running.signal("kill")

    result, _ = execute(container_spec(work_dir, "echo started; sleep 30"), during)
    assert result.return_code == 137
    assert result.failure_class == "canceled"
    assert result.wall_seconds < 15


def test_pause_and_resume_reach_the_container(work_dir: Path) -> None:
    async def during(running: RunningCommand, out: Collected) -> CommandResult:
        while b"tick" not in out.data["stdout"]:
            await asyncio.sleep(0.1)
        running.signal("pause")
        await asyncio.sleep(1.0)  # the runtime command takes a moment
        paused_at = out.data["stdout"].count(b"tick")
        await asyncio.sleep(0.6)
        assert out.data["stdout"].count(b"tick") == paused_at
        running.signal("resume")
        await asyncio.sleep(1.0)
        assert out.data["stdout"].count(b"tick") > paused_at
        return await running.kill("test over")

    spec = container_spec(work_dir, "while :; do echo tick; sleep 0.05; done", kill_grace_seconds=2)
    result, _ = execute(spec, during)
    assert result.failure_class == "canceled"
    assert result.failure_reason == "test over"


def test_timeout_stops_the_container(work_dir: Path) -> None:
    spec = container_spec(work_dir, "sleep 30", run_timeout_seconds=1, kill_grace_seconds=1)
    result, _ = execute(spec)
    assert result.failure_class == "timeout"
    assert result.return_code == 137  # PID 1 ignores TERM: the KILL ended it
    assert result.wall_seconds < 10


def test_cpu_and_memory_are_measured(work_dir: Path) -> None:
    # The loop burns CPU; tail holds 40 MiB while its reader sleeps, long enough to sample.
    busy = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"
    hold = "head -c 40m /dev/zero | tail -c 40m | { sleep 1; wc -c; }"
    result, out = execute(container_spec(work_dir, f"{busy}; {hold}"))
    assert out.text().strip() == str(40 * 2**20)
    assert result.cpu_user_seconds is not None and result.cpu_system_seconds is not None
    assert result.cpu_user_seconds + result.cpu_system_seconds > 0.2
    assert result.peak_rss_bytes is not None and result.peak_rss_bytes > 40 * 2**20


def test_out_of_memory_is_classified(work_dir: Path) -> None:
    # busybox tail keeps the stream in memory: far beyond the container's 32 MiB.
    options = "--memory 32m --memory-swap 32m"
    command = "head -c 300m /dev/zero | tail -c 250m > /dev/null"
    result, _ = execute(container_spec(work_dir, command, container_options=options))
    assert result.return_code == 137
    assert result.failure_class == "oom"
    assert result.failure_reason is not None and "SIGKILL" in result.failure_reason


def test_a_runtime_whose_daemon_is_down_is_not_a_missing_image(tmp_path: Path) -> None:
    # a docker client without its daemon (what the real client prints, then exit code 1)
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
        " Is the docker daemon running?' >&2\nexit 1\n"
    )
    docker.chmod(0o755)
    for folder in ("input", "output", "resource", "tmp"):
        (tmp_path / folder).mkdir()
    spec = CommandSpec(command="true", work_dir=tmp_path, shell=True, env={}, cpu=1,
                       container="alpine", container_runtime=str(docker))  # fmt: skip
    result, _ = execute(spec)
    assert result.return_code is None
    assert result.failure_class == "runtime"  # the worker's fault, not the task's
    assert result.failure_reason is not None
    assert f"{docker} does not answer" in result.failure_reason
    assert (
        "is the " in result.failure_reason
        and "daemon running on this worker?" in result.failure_reason
    )
    assert "pull or load it" not in result.failure_reason
