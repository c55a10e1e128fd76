"""Commands run by `scitq.agent.process` as real subprocesses: exit codes, environment,
streams, signals, usage."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

import psutil
import pytest

from scitq.agent.process import READ_CHUNK_BYTES, CommandResult, CommandSpec, RunningCommand
from scitq.agent.usage import oom_reason
from tests.agent.running import Collected, execute

PYTHON = shlex.quote(sys.executable)
MB = 1_000_000

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    for folder in ("input", "output", "resource", "tmp"):
        (tmp_path / folder).mkdir()
    return tmp_path


def make_spec(work_dir: Path, command: str, **options: object) -> CommandSpec:
    options.setdefault("shell", True)
    options.setdefault("env", {})
    options.setdefault("cpu", 1)
    return CommandSpec(command=command, work_dir=work_dir, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_code_is_reported(work_dir: Path, code: int) -> None:
    result, _ = execute(make_spec(work_dir, f"exit {code}"))
    assert result.return_code == code
    assert result.failure_class == (None if code == 0 else "exit")
    assert (result.failure_reason is None) == (code == 0)
    assert result.wall_seconds > 0


def test_shell_command_keeps_its_quoting(work_dir: Path) -> None:
    _, out = execute(make_spec(work_dir, """echo "a  b" 'c'"""))
    assert out.text() == "a  b c\n"


def test_exec_command_passes_arguments_with_spaces(work_dir: Path) -> None:
    result, out = execute(make_spec(work_dir, """printf '%s|' "a  b" c '$HOME'""", shell=False))
    assert result.return_code == 0
    assert out.text() == "a  b|c|$HOME|"  # one argument each, no shell expansion


def test_environment(work_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESS_TEST_AGENT_ONLY", "from the agent")
    monkeypatch.setenv("PROCESS_TEST_OVERRIDDEN", "from the agent")
    env = {"SCITQ_TASK_ID": "42", "SCITQ_ATTEMPT": "2", "PROCESS_TEST_OVERRIDDEN": "from the task"}
    result, out = execute(make_spec(work_dir, "env", env=env, cpu=3))
    seen = dict(line.split("=", 1) for line in out.text().splitlines() if "=" in line)
    assert result.return_code == 0
    assert seen["INPUT"] == str(work_dir / "input")
    assert seen["OUTPUT"] == str(work_dir / "output")
    assert seen["RESOURCE"] == str(work_dir / "resource")
    assert seen["TEMP"] == str(work_dir / "tmp")
    assert seen["CPU"] == "3"
    assert seen["SCITQ_TASK_ID"] == "42"
    assert seen["SCITQ_ATTEMPT"] == "2"
    assert seen["PATH"] == os.environ["PATH"]
    assert seen["PROCESS_TEST_AGENT_ONLY"] == "from the agent"
    assert seen["PROCESS_TEST_OVERRIDDEN"] == "from the task"


def test_runs_in_the_work_folder(work_dir: Path) -> None:
    _, out = execute(make_spec(work_dir, "pwd"))
    assert Path(out.text().strip()).resolve() == work_dir.resolve()


def test_timeout_sends_term_then_kill(work_dir: Path) -> None:
    spec = make_spec(
        work_dir, "trap '' TERM; sleep 30", run_timeout_seconds=0.5, kill_grace_seconds=0.5
    )
    result, _ = execute(spec)
    assert result.failure_class == "timeout"
    assert result.failure_reason is not None and "0.5 s" in result.failure_reason
    assert result.return_code == 137  # TERM ignored: KILL after the grace period
    assert 0.9 <= result.wall_seconds < 5


def test_timeout_term_is_enough_for_a_command_that_obeys(work_dir: Path) -> None:
    spec = make_spec(work_dir, "sleep 30", run_timeout_seconds=0.3, kill_grace_seconds=20)
    result, _ = execute(spec)
    assert result.failure_class == "timeout"
    assert result.return_code == 143  # 128 + SIGTERM
    assert result.wall_seconds < 5  # well before the grace period would end


def test_cpu_of_a_shell_child_is_counted(work_dir: Path) -> None:
    busy = "import time\nwhile time.process_time() < 1.0: pass"
    # "; true" keeps the shell alive, so python is its child, not an exec.
    result, _ = execute(make_spec(work_dir, f"{PYTHON} -c {shlex.quote(busy)}; true"))
    assert result.cpu_user_seconds is not None and result.cpu_system_seconds is not None
    cpu = result.cpu_user_seconds + result.cpu_system_seconds
    assert 0.95 <= cpu <= result.wall_seconds + 0.2


def test_peak_rss_of_a_100_mb_process(work_dir: Path) -> None:
    hog = "import time\nb = b'x' * 100_000_000\ntime.sleep(1.0)"
    result, _ = execute(make_spec(work_dir, f"{PYTHON} -c {shlex.quote(hog)}"))
    assert result.return_code == 0
    assert result.peak_rss_bytes is not None
    assert 100 * MB <= result.peak_rss_bytes <= 250 * MB


def test_peak_rss_is_not_the_agents(work_dir: Path) -> None:
    # The kernel hands the spawner's memory high-water mark to the child's rusage.
    ballast = b"x" * 300 * MB
    result, _ = execute(make_spec(work_dir, "sleep 0.2", shell=False))
    assert len(ballast) == 300 * MB
    assert result.peak_rss_bytes is not None
    assert 0 < result.peak_rss_bytes < 50 * MB


def test_binary_nul_bytes_and_a_5_mb_line_reach_the_sink_intact(work_dir: Path) -> None:
    expected = bytes(range(256)) * 4 + b"\0" * 10 + b"\xff\xfe" + b"y" * (5 * MB) + b"\n"
    write = "import sys\nsys.stdout.buffer.write(bytes(range(256)) * 4 + b'\\0' * 10"
    write += " + b'\\xff\\xfe' + b'y' * 5_000_000 + b'\\n')"
    result, out = execute(make_spec(work_dir, f"{PYTHON} -c {shlex.quote(write)}"))
    assert result.return_code == 0
    assert bytes(out.data["stdout"]) == expected
    assert 0 < out.largest_chunk <= READ_CHUNK_BYTES


def test_10_mb_on_each_stream_interleaved_does_not_deadlock(work_dir: Path) -> None:
    write = (
        "import sys\n"
        "block = b'o' * 65536\n"
        "for _ in range(160):\n"
        "    sys.stdout.buffer.write(block); sys.stdout.flush()\n"
        "    sys.stderr.buffer.write(block.upper()); sys.stderr.flush()\n"
    )
    result, out = execute(make_spec(work_dir, f"{PYTHON} -c {shlex.quote(write)}"))
    assert result.return_code == 0
    assert out.data["stdout"] == b"o" * 160 * 65536
    assert out.data["stderr"] == b"O" * 160 * 65536


def test_pause_stops_progress_and_resume_restarts_it(work_dir: Path) -> None:
    async def during(running: RunningCommand, out: Collected) -> CommandResult:
        await asyncio.sleep(0.5)
        assert out.data["stdout"].count(b"tick") > 0
        running.signal("pause")
        await asyncio.sleep(0.2)
        paused_at = out.data["stdout"].count(b"tick")
        await asyncio.sleep(0.6)
        assert out.data["stdout"].count(b"tick") == paused_at
        running.signal("resume")
        await asyncio.sleep(0.5)
        assert out.data["stdout"].count(b"tick") > paused_at
        return await running.kill("test over")

    result, _ = execute(make_spec(work_dir, "while :; do echo tick; sleep 0.05; done"), during)
    assert result.failure_class == "canceled"
    assert result.failure_reason == "test over"


def test_kill_while_paused_stops_the_command(work_dir: Path) -> None:
    async def during(running: RunningCommand, out: Collected) -> CommandResult:
        await asyncio.sleep(0.3)
        running.signal("pause")
        return await running.kill("agent shutting down")

    spec = make_spec(work_dir, "sleep 30", kill_grace_seconds=5)
    result, _ = execute(spec, during)
    assert result.failure_class == "canceled"
    assert result.return_code == 143  # TERM reached the paused command
    assert result.wall_seconds < 5


def test_term_signal_is_recorded_as_canceled(work_dir: Path) -> None:
    async def during(running: RunningCommand, out: Collected) -> None:
        await asyncio.sleep(0.3)
        running.signal("term")

    result, _ = execute(make_spec(work_dir, "sleep 30"), during)
    assert result.return_code == 143
    assert result.failure_class == "canceled"
    assert result.failure_reason is not None and "'term'" in result.failure_reason


def test_unknown_signal_is_refused(work_dir: Path) -> None:
    async def during(running: RunningCommand, out: Collected) -> CommandResult:
        with pytest.raises(ValueError, match="unknown signal"):
            running.signal("hup")
        return await running.wait()

    result, _ = execute(make_spec(work_dir, "true"), during)
    assert result.return_code == 0


def test_background_process_holding_the_output_is_killed(work_dir: Path) -> None:
    started = time.monotonic()
    result, out = execute(make_spec(work_dir, "sleep 60 & echo $!"))
    assert result.return_code == 0
    assert time.monotonic() - started < 10
    pid = int(out.text())
    time.sleep(0.2)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_missing_exec_command_is_a_clear_failure(work_dir: Path) -> None:
    result, _ = execute(make_spec(work_dir, "scitq-no-such-command --flag", shell=False))
    assert result.return_code is None
    assert result.failure_class == "exit"
    assert result.failure_reason is not None
    assert "scitq-no-such-command" in result.failure_reason
    assert "not found" in result.failure_reason


def test_missing_shell_command_is_a_clear_failure(work_dir: Path) -> None:
    result, out = execute(make_spec(work_dir, "scitq-no-such-command --flag"))
    assert result.return_code == 127
    assert result.failure_reason == "exit code 127: command not found"
    assert "scitq-no-such-command" in out.text("stderr")


def test_unbalanced_quotes_are_a_clear_failure(work_dir: Path) -> None:
    result, _ = execute(make_spec(work_dir, "echo 'oops", shell=False))
    assert result.return_code is None
    assert result.failure_reason is not None and "cannot parse" in result.failure_reason


def test_missing_work_folder_is_a_clear_failure(tmp_path: Path) -> None:
    result, _ = execute(make_spec(tmp_path / "absent", "true"))
    assert result.return_code is None
    assert result.failure_reason is not None and "absent" in result.failure_reason


def test_a_failing_sink_does_not_stop_the_command(work_dir: Path) -> None:
    def sink(stream: str, data: bytes) -> None:
        raise RuntimeError("broken sink")

    async def main() -> CommandResult:
        running = await RunningCommand.start(make_spec(work_dir, "echo a; exit 4"), sink)
        return await running.wait()

    assert asyncio.run(main()).return_code == 4


@pytest.mark.parametrize(
    ("code", "peak", "limit", "oom_kills", "expected"),
    [
        (137, 95 * MB, 100 * MB, 0, "near the memory limit"),
        (137, 10 * MB, 100 * MB, 1, "OOM killer"),
        (137, 10 * MB, 100 * MB, 0, None),  # someone else's SIGKILL
        (137, None, None, None, None),  # nothing known
        (1, 99 * MB, 100 * MB, 1, None),  # not killed by SIGKILL
    ],
)
def test_oom_heuristic(
    code: int, peak: int | None, limit: int | None, oom_kills: int | None, expected: str | None
) -> None:
    reason = oom_reason(
        code, peak_rss_bytes=peak, memory_limit_bytes=limit, oom_kills_during_run=oom_kills
    )
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason
