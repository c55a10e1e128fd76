"""`scitq.agent.spawn`: posix_spawn with pipes, a new session and a working folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scitq.agent import spawn as spawn_module
from scitq.agent.spawn import spawn


def _run(arguments: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[str, int]:
    started = spawn(arguments, env or {"PATH": os.environ["PATH"]}, cwd)
    chunks = []
    while data := os.read(started.stdout, 65536):
        chunks.append(data)
    _, status, _ = os.wait4(started.pid, 0)
    started.close()
    return b"".join(chunks).decode(), os.waitstatus_to_exitcode(status)


def test_the_command_runs_in_its_folder_and_session_and_the_agent_stays(tmp_path: Path) -> None:
    here = os.getcwd()
    out, code = _run(["sh", "-c", 'pwd; ps -o sid= -p $$; echo "$$"'], tmp_path)
    folder, sid, pid = out.split()
    assert code == 0 and folder == str(tmp_path) and sid == pid  # its own session leader
    assert os.getcwd() == here


def test_no_descriptor_but_the_three_standard_ones_is_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leak = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leak, True)  # as one the agent's parent could have left it
    monkeypatch.setattr(spawn_module, "_DEVNULL", None)  # as in a new agent: none spawned yet
    try:
        out, _ = _run(["sh", "-c", "ls /proc/$$/fd"], tmp_path)
        assert not os.get_inheritable(leak)
    finally:
        os.close(leak)
    # sh's own descriptors: 0-2 and the one ls reads the folder with, at most
    assert {int(fd) for fd in out.split()} <= {0, 1, 2, 3}


def test_a_program_is_searched_in_the_commands_path(tmp_path: Path) -> None:
    tool = tmp_path / "bin" / "scitq-spawned-tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho found\n")
    tool.chmod(0o755)
    out, code = _run(["scitq-spawned-tool"], tmp_path, {"PATH": str(tool.parent)})
    assert (out, code) == ("found\n", 0)
    with pytest.raises(FileNotFoundError):
        spawn(["scitq-spawned-tool"], {"PATH": "/nonexistent"}, tmp_path)
    tool.chmod(0o644)
    with pytest.raises(PermissionError):
        spawn([str(tool)], {}, tmp_path)


def test_a_relative_folder_still_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rel").mkdir()
    monkeypatch.chdir(tmp_path)
    out, code = _run(["pwd"], Path("rel"))
    assert (out.strip(), code) == (str(tmp_path / "rel"), 0)
