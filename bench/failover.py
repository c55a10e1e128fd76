"""RPO and RTO of a database failover, from tests/chaos/test_failover.py.

Runs the failover test (a primary and a synchronous standby; two agents, the scheduler
and a `scitq batch wait` on a multi-host URL; the primary killed with SIGKILL mid-run,
the standby promoted) ``--runs`` times for each ``--pause`` (seconds between the kill
and the promotion: 0 is an operator or a manager that promotes at once, 30 is Patroni's
default TTL), and prints the figures of every run and their medians.

    PYTHONPATH=. python bench/failover.py                 # pauses 0 and 30, 3 runs each
    PYTHONPATH=. python bench/failover.py --pause 0 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

COLUMNS = [
    ("rpo_output_rows_lost", "rows lost"),
    ("rpo_results_lost", "results lost"),
    ("committed_output_rows_at_kill", "rows at kill"),
    ("live_executions_at_kill", "live at kill"),
    ("promote_s", "promote s"),
    ("rto_first_claim_or_finish_s", "kill→first claim/finish s"),
    ("rto_cli_s", "kill→CLI s"),
    ("after_promotion_first_claim_or_finish_s", "promoted→first claim/finish s"),
    ("after_promotion_cli_s", "promoted→CLI s"),
    ("cli_run_s", "CLI run s"),
    ("cli_attempts", "CLI tries"),
]


def run_once(pause: float, tasks: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        figures = Path(folder) / "figures.json"
        env = {**os.environ, "FAILOVER_FIGURES": str(figures),
               "FAILOVER_PAUSE": str(pause), "FAILOVER_TASKS": str(tasks)}  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/chaos/test_failover.py"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            sys.exit(
                f"the failover test failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}{result.stderr[-2000:]}"
            )
        loaded: dict[str, object] = json.loads(figures.read_text())
        return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pause", type=float, action="append", help="seconds (repeatable)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=48)
    args = parser.parse_args()
    for pause in args.pause or [0.0, 30.0]:
        runs = [run_once(pause, args.tasks) for _ in range(args.runs)]
        print(f"\npause {pause:g} s between the kill and the promotion, {args.tasks} tasks")
        print("| run | " + " | ".join(title for _, title in COLUMNS) + " | executions |")
        print("|---" * (len(COLUMNS) + 2) + "|")
        for number, figures in enumerate(runs, start=1):
            cells = [str(figures[key]) for key, _ in COLUMNS]
            print(f"| {number} | " + " | ".join(cells) + f" | {figures['executions']} |")
        medians = [f"{statistics.median(float(str(f[key])) for f in runs):g}" for key, _ in COLUMNS]
        print("| median | " + " | ".join(medians) + " | |")


if __name__ == "__main__":
    main()
