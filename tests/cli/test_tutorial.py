"""docs/tutorial.md, run as written: its sh blocks and its Python script, in order."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
BLOCK = re.compile(r"(?:<!-- file: (?P<file>\S+) -->\s*)?```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)


def blocks() -> list[tuple[str, str | None, str]]:
    return [(m["lang"], m["file"], m["body"]) for m in BLOCK.finditer(DOC.read_text())]


def test_the_tutorial_runs_as_written(db, start_agent, tmp_path):
    start_agent("-c", "4")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    scitq = bindir / "scitq"  # the command the reader has after pip install
    scitq.write_text(f'#!/bin/sh\nexec {sys.executable} -m scitq "$@"\n')
    scitq.chmod(0o755)
    root = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "SCITQ_DATABASE_URL": db, "PYTHONPATH": python_path,
           "PATH": f"{bindir}:{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    ran = 0
    for lang, file, body in blocks():
        if file is not None:
            (work / file).write_text(body)
        elif lang == "sh":
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, (
                f"{body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            )
            ran += 1
    assert ran >= 4
    # what the tutorial says the pipeline computes
    assert (work / "results" / "s1" / "reads.txt").read_text().strip() == "25"
    assert (work / "results" / "wf" / "report" / "total.txt").read_text().strip() == "75"
    longs = [(work / "results" / "wf" / s / "long.txt").read_text().strip() for s in ("s1", "s2")]
    assert longs == ["7", "7"]  # read i has 12 + i bases: more than 30 for i = 19..25


README = DOC.parents[1] / "README.md"


def test_readme_then_tutorial_as_a_newcomer_runs_them(db, tmp_path):
    """The README's quick start, then the tutorial with `scitq up` in another terminal: the
    quick start's worker must not be taken over, and `up`'s agent serves every batch."""
    from tests.cli.test_up import READY, Up, _free_port

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "scitq").write_text(f'#!/bin/sh\nexec {sys.executable} -m scitq "$@"\n')
    (bindir / "scitq").chmod(0o755)
    root = str(Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env.update(SCITQ_DATABASE_URL=db, PYTHONPATH=root, SCITQ_DATA_DIR=str(tmp_path / "data"),
               SCITQ_WEB_PORT=str(_free_port()),
               PATH=f"{bindir}:{Path(sys.executable).parent}:{os.environ['PATH']}")  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()

    def run(body: str) -> str:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, f"{body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        return done.stdout + done.stderr

    [quick_start] = [b for lang, _, b in blocks_of(README) if lang == "sh" and "--drain" in b]
    out = run(quick_start)
    assert "hello world" in out and "serving batches demo" in out
    up = Up(env, tmp_path)
    try:
        up.wait_ready()
        assert READY in up.stdout()
        assert "serving all batches" in up.stdout()
        ran = 0
        for lang, file, body in blocks():
            if file is not None:
                (work / file).write_text(body)
            elif lang == "sh":
                run(body)
                ran += 1
        assert ran >= 4
        assert (work / "results" / "wf" / "report" / "total.txt").read_text().strip() == "75"
        # the quick start's agent has exited: up's agent resumed the worker of that work
        # dir, and serves every batch now, not just demo
        rows = subprocess.run([sys.executable, "-m", "scitq", "worker", "list", "--json"],
                              env=env, capture_output=True, text=True, check=True)  # fmt: skip
        [worker] = json.loads(rows.stdout)
        assert worker["batches"] == [], rows.stdout
        assert f"agent: worker {worker['name']} (id {worker['worker_id']}) serving all batches" in (
            up.stdout()
        )
    finally:
        up.stop()


def blocks_of(path: Path) -> list[tuple[str, str | None, str]]:
    return [(m["lang"], m["file"], m["body"]) for m in BLOCK.finditer(path.read_text())]
