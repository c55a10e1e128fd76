"""The arguments of ``scitq-manage``: scitq v1's objects, actions and flags (§1.17 of the
v1 inventory), for `scitq.cli.v1_manage`."""

from __future__ import annotations

import argparse

from scitq.lib.admin import FLAVOR_DEFAULT_EVICTION, FLAVOR_DEFAULT_LIMIT
from scitq.lib.shapes import V1_EXECUTION_STATUSES, V1_TASK_STATUSES
from scitq.states import TaskStatus, WorkerLiveness

SERVER_HELP = "the scitq server (default: $SCITQ_SERVER, else the configured database)"
#: ``-n``/``-i`` pick a task or worker by name or id.
_WHO = {"-i": ("--id", int), "-n": ("--name", str)}


def _who(parser: argparse.ArgumentParser, exclusive: bool = True) -> None:
    group = parser.add_mutually_exclusive_group() if exclusive else parser
    for short, (long, kind) in _WHO.items():
        group.add_argument(short, long, type=kind, default=None, help=f"by {long[2:]}")


def _listing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-H", "--no-header", action="store_true", help="do not print headers")
    parser.add_argument("-L", "--long", action="store_true", help="print every column, whole")


def _worker(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = sub.add_parser("worker", help="workers").add_subparsers(dest="action")
    listing = actions.add_parser("list", help="list workers")
    listing.add_argument("-b", "--batch", default="")
    worker_statuses = ["", TaskStatus.RUNNING, TaskStatus.PAUSED, WorkerLiveness.OFFLINE,
                       TaskStatus.FAILED]  # fmt: skip
    listing.add_argument("-S", "--status", default="", choices=worker_statuses)
    _listing(listing)
    deploy = actions.add_parser("deploy", help="deploy workers")
    deploy.add_argument("-C", "--concurrency", type=int, default=1)
    deploy.add_argument("-p", "--prefetch", type=int, default=0)
    deploy.add_argument("-f", "--flavor", required=True)
    deploy.add_argument("-r", "--region", required=True)
    deploy.add_argument("-P", "--provider", required=True)
    deploy.add_argument("-N", "--number", type=int, default=1)
    deploy.add_argument("-b", "--batch", default=None)
    _who(actions.add_parser("delete", help="delete a worker (destroying a deployed one)"))
    update = actions.add_parser("update", help="change a worker")
    _who(update, exclusive=False)
    update.add_argument("-S", "--status", default=None)
    update.add_argument("-b", "--batch", default=None)
    update.add_argument("-C", "--concurrency", default=None)
    update.add_argument("-p", "--prefetch", type=int, default=None)
    update.add_argument("-f", "--flavor", default=None)


def _batch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = sub.add_parser("batch", help="batches").add_subparsers(dest="action")
    actions.add_parser("list", help="list batches")
    stop = actions.add_parser("stop", help="stop (pause) batches")
    stop.add_argument("-n", "--name", action="append", required=True)
    group = stop.add_mutually_exclusive_group()
    group.add_argument("-N", "--number", type=int, default=0, choices=[0, 3, 9, 20])
    group.add_argument("--term", action="store_true", help="as -N 3")
    group.add_argument("--kill", action="store_true", help="as -N 9")
    group.add_argument("--pause", action="store_true", help="as -N 20")
    go = actions.add_parser("go", help="let batches go on")
    go.add_argument("-n", "--name", action="append", required=True)
    group = go.add_mutually_exclusive_group()
    group.add_argument("-N", "--number", type=int, default=0, choices=[0, 18])
    group.add_argument("--cont", action="store_true", help="as -N 18")
    delete = actions.add_parser("delete", help="delete batches")
    delete.add_argument("-n", "--name", action="append", required=True)


def _task(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = sub.add_parser("task", help="tasks").add_subparsers(dest="action")
    listing = actions.add_parser("list", help="list tasks")
    listing.add_argument("-S", "--status", default="", choices=["", *V1_TASK_STATUSES])
    listing.add_argument("-b", "--batch", default="")
    _listing(listing)
    _who(actions.add_parser("relaunch", help="relaunch a task"))
    output = actions.add_parser("output", help="the output/error of a task")
    _who(output)
    streams = output.add_mutually_exclusive_group()
    streams.add_argument("-o", "--output", action="store_true")
    streams.add_argument("-e", "--error", action="store_true")
    _who(actions.add_parser("delete", help="delete a task"))
    update = actions.add_parser("update", help="change a task")
    _who(update)
    update.add_argument("-N", "--new-name", default=None)
    update.add_argument("-c", "--command", default=None)
    update.add_argument("-S", "--status", default=None)
    update.add_argument("-b", "--batch", default=None)
    update.add_argument("-d", "--docker", default=None)
    update.add_argument("-O", "--option", default=None)
    update.add_argument("-j", "--input", default=None)
    update.add_argument("-o", "--output", default=None)
    update.add_argument("-R", "--requirements", default=None)
    update.add_argument("--run-timeout", type=int, default=None)
    update.add_argument("--download-timeout", type=int, default=None)


def _execution(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = sub.add_parser("execution", help="executions").add_subparsers(dest="action")
    listing = actions.add_parser("list", help="list executions")
    _who(listing)
    listing.add_argument("-S", "--status", default=None, choices=V1_EXECUTION_STATUSES)
    listing.add_argument("-b", "--batch", default="")
    listing.add_argument("-H", "--no-header", action="store_true")
    listing.add_argument("-l", "--limit", type=int, default=10)
    listing.add_argument("-L", "--long", action="store_true")
    output = actions.add_parser("output", help="the output/error of executions")
    group = output.add_mutually_exclusive_group()
    group.add_argument("-i", "--id", type=int, default=None)
    group.add_argument("-n", "--name", default=None)
    group.add_argument("-x", "--execution-id", type=int, default=None)
    output.add_argument("-N", "--relative-execution", type=int, default=None)
    output.add_argument("-l", "--limit", type=int, default=10)
    streams = output.add_mutually_exclusive_group()
    streams.add_argument("-o", "--output", action="store_true")
    streams.add_argument("-e", "--error", action="store_true")
    output.add_argument("-H", "--no-header", action="store_true")
    output.add_argument("-S", "--status", default=None, choices=V1_EXECUTION_STATUSES)
    output.add_argument("-C", "--columns", default=None)


def _recruiter(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = sub.add_parser("recruiter", help="recruiters").add_subparsers(dest="action")
    listing = actions.add_parser("list", help="list recruiters")
    listing.add_argument("-b", "--batch", default=None)
    _listing(listing)
    for action, required in (("create", True), ("update", False)):
        parser = actions.add_parser(action, help=f"{action} a recruiter")
        parser.add_argument("-b", "--batch", required=True)
        parser.add_argument("-n", "--rank", type=int, default=1)
        parser.add_argument("-f", "--flavor", required=required, default=None)
        parser.add_argument("-r", "--region", default=None)
        parser.add_argument("-P", "--provider", default=None)
        parser.add_argument("-C", "--concurrency", type=int, required=required, default=None)
        parser.add_argument("-p", "--prefetch", type=int, default=None)
        parser.add_argument("-T", "--tasks-per-worker", type=int, default=None)
        parser.add_argument("-m", "--minimum-tasks", type=int, default=None)
        parser.add_argument("-W", "--maximum-workers", type=int, default=None)
    delete = actions.add_parser("delete", help="delete a recruiter")
    delete.add_argument("-b", "--batch", required=True)
    delete.add_argument("-n", "--rank", type=int, default=1)


def _others(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    flavor = sub.add_parser("flavor", help="flavors").add_subparsers(dest="action")
    listing = flavor.add_parser("list", help="list the flavors the providers serve")
    listing.add_argument("-P", "--provider", default=None)
    listing.add_argument("-r", "--region", default=None)
    for name in ("--min-cpu", "--min-ram", "--min-disk"):
        listing.add_argument(name, type=int, default=0)
    listing.add_argument("--max-eviction", type=int, default=FLAVOR_DEFAULT_EVICTION)
    listing.add_argument("--limit", type=int, default=FLAVOR_DEFAULT_LIMIT)
    listing.add_argument("--protofilters", default=None)
    db = sub.add_parser("db", help="the database")
    db.add_argument("-c", "--conf", default=None, help="v1's server configuration (unused)")
    db_actions = db.add_subparsers(dest="action")
    for action in ("init", "upgrade", "upgrade-or-init"):
        db_actions.add_parser(action, help="migrate the database to this version")
    ansible = sub.add_parser("ansible", help="v1's ansible files").add_subparsers(dest="action")
    ansible.add_parser("path")
    ansible.add_parser("install").add_argument("-p", "--path", default=None)
    ansible.add_parser("inventory")
    debug = sub.add_parser("debug", help="v1's task debugger").add_subparsers(dest="action")
    run = debug.add_parser("run")
    _who(run)
    run.add_argument("-b", "--batch", default=None)
    run.add_argument("-r", "--retry", action="store_true")
    run.add_argument("--no-resource", action="store_true")
    config = sub.add_parser("config", help="v1's server configuration")
    rclone = config.add_subparsers(dest="action").add_parser("rclone")
    rclone.add_argument("--install", action="store_true")
    rclone.add_argument("--show", action="store_true")


def manage_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scitq-manage", description="scitq v1's scitq-manage")
    parser.add_argument("-s", "--server", default=None, help=SERVER_HELP)
    parser.add_argument("-t", "--timeout", type=int, help="accepted (v1's GET timeout)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="object")
    for add in (_worker, _batch, _task, _execution, _recruiter, _others):
        add(sub)
    return parser
