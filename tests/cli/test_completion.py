"""Shell completion: the scripts, and completions computed by a real scitq process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

SCITQ = [sys.executable, "-m", "scitq"]


def complete(words: str, shell: str = "bash") -> list[str]:
    """What the completion script gets back for the command line ``words``."""
    parts = words.split(" ")
    env = {**os.environ, "_SCITQ_COMPLETE": f"{shell}_complete",
           "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)}  # fmt: skip
    out = subprocess.run(SCITQ, env=env, capture_output=True, text=True, timeout=60, check=True)
    if shell == "bash":
        return [line.split(",", 1)[1] for line in out.stdout.splitlines()]
    return out.stdout.splitlines()


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_script_calls_scitq_back_for_completions(shell):
    out = subprocess.run([*SCITQ, "completion", shell], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    assert f"_SCITQ_COMPLETE={shell}_complete" in out.stdout
    assert "scitq" in out.stdout


def test_subcommands_and_options_complete():
    assert {"task", "batch", "worker", "launch", "completion"} <= set(complete("scitq "))
    assert complete("scitq ta") == ["task"]
    assert {"list", "show", "log", "explain", "retry"} <= set(complete("scitq task "))
    assert "--status" in complete("scitq task list --")
    assert set(complete("scitq completion ")) == {"bash", "zsh", "fish"}


def test_zsh_gets_completions_too():
    lines = complete("scitq bat", shell="zsh")
    assert "batch" in lines


def test_bash_sources_the_script():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = subprocess.run([*SCITQ, "completion", "bash"], capture_output=True, text=True,
                            timeout=60, check=True).stdout  # fmt: skip
    out = subprocess.run([bash, "-c", script + "\ncomplete -p scitq"], capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert "_scitq_completion" in out.stdout
    assert out.stdout.strip().endswith("scitq")
