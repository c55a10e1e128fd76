"""docs/tutorial.md, run as written: its sh blocks and its Python script, in order."""

from __future__ import annotations

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
