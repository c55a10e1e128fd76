"""CLI start-up benchmark: wall time of `scitq` commands as a user types them.

Each command is a fresh ``python -m scitq ...`` process against the embedded database
(started and migrated once, in a temporary directory, beforehand), as after ``pip
install .`` (the modules compiled to bytecode first, as pip does: a shell that sets
``PYTHONDONTWRITEBYTECODE`` would otherwise compile them on every run): what is
measured is the interpreter, the imports, the settings, the embedded server check (is
it running, is its schema current) and the command itself.
Also prints what ``import scitq.cli`` and ``import scitq.cli.launch`` load. See
bench/README.md.

    PYTHONPATH=. python bench/cli_startup.py [--runs 20] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.control_plane import machine
from scitq.embedded.server import EmbeddedServer

#: The target of issue 19: `scitq launch` within a quarter of a second.
LAUNCH_TARGET_SECONDS = 0.25

COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass (the floor)", ["-c", "pass"]),
    ("scitq --help", ["-m", "scitq", "--help"]),
    ("scitq launch -b bench -- true", ["-m", "scitq", "launch", "-b", "bench", "--", "true"]),
    ("scitq task list -b bench --limit 5", ["-m", "scitq", "task", "list", "-b", "bench",
                                            "--limit", "5"]),
    ("scitq batch list", ["-m", "scitq", "batch", "list"]),
]  # fmt: skip


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    # run from the checkout: python puts the current directory first on sys.path
    subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True,
                   cwd=env["PYTHONPATH"])  # fmt: skip
    return time.perf_counter() - started


def loaded(module: str, env: dict[str, str]) -> str:
    code = (
        f"import sys, time; t = time.perf_counter(); import {module}; "
        "t = time.perf_counter() - t; "
        "heavy = [m for m in ('sqlalchemy', 'alembic', 'psycopg', 'rich', 'boto3') "
        "if m in sys.modules]; names = ', '.join(heavy) or 'none of them'; "
        "print(f'{t * 1000:.0f} ms, loads: {names}')"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                          capture_output=True, text=True, cwd=env["PYTHONPATH"])  # fmt: skip
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per command")
    parser.add_argument("--database-url", default=None, help="a server instead of embedded")
    parser.add_argument(
        "--source", default=None, help="time the scitq of another checkout (a directory)"
    )
    options = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="scitq-bench-cli-", dir="/tmp"))
    base.chmod(0o755)  # as root the server runs as scitq-pg, who must traverse it
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SCITQ_") and k != "PYTHONDONTWRITEBYTECODE"}  # fmt: skip
    env["PYTHONPATH"] = options.source or str(Path(__file__).resolve().parents[1])
    print(f"scitq from {env['PYTHONPATH']}")
    # as after `pip install .`, which compiles the modules: none is compiled while timed
    subprocess.run([sys.executable, "-m", "compileall", "-q", "scitq"], env=env, check=True,
                   cwd=env["PYTHONPATH"])  # fmt: skip
    env["SCITQ_DATA_DIR"] = str(base / "data")
    try:
        if options.database_url:
            env["SCITQ_DATABASE_URL"] = conninfo = options.database_url
            where = "SCITQ_DATABASE_URL"
        else:
            # started and migrated by the scitq timed (its migrations may differ from ours)
            start = (
                "import pathlib; from scitq.embedded import ensure_embedded as e; "
                f"print(e(pathlib.Path({str(base / 'data')!r})))"
            )
            conninfo = subprocess.run([sys.executable, "-c", start], env=env, check=True,
                                      capture_output=True, text=True, cwd=env["PYTHONPATH"]
                                      ).stdout.strip()  # fmt: skip
            where = f"embedded, in {base / 'data'}"
        print(machine(conninfo, where))
        print(f"\nimport scitq.cli: {loaded('scitq.cli', env)}")
        print(f"import scitq.cli.launch: {loaded('scitq.cli.launch', env)}\n")
        print("| command | median | min | max | runs |\n|---|---|---|---|---|")
        launch = float("nan")
        for label, args in COMMANDS:
            timed(args, env)  # warm the page cache
            times = [timed(args, env) for _ in range(options.runs)]
            print(f"| `{label}` | {statistics.median(times) * 1000:.0f} ms | "
                  f"{min(times) * 1000:.0f} ms | {max(times) * 1000:.0f} ms | {len(times)} |",
                  flush=True)  # fmt: skip
            if label.startswith("scitq launch"):
                launch = statistics.median(times)
        verdict = "met" if launch <= LAUNCH_TARGET_SECONDS else "MISSED"
        print(f"\nscitq launch median {launch:.3f} s: target ≤ {LAUNCH_TARGET_SECONDS} s {verdict}")
    finally:
        if not options.database_url:
            EmbeddedServer(base / "data").stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
