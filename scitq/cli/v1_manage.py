"""``scitq-manage``: scitq v1's administration command, with its objects, actions, flags
and tables (tabulate's plain format), on `scitq.lib.Server`.

    scitq-manage [-s SERVER] worker list|deploy|delete|update ...
    scitq-manage task list|relaunch|output|delete|update ...
    scitq-manage batch list|stop|go|delete ...
    scitq-manage execution list|output ...
    scitq-manage recruiter list|create|update|delete ...
    scitq-manage flavor list ...
    scitq-manage db upgrade|init|upgrade-or-init

``ansible``, ``debug run`` and ``config rclone`` have no equivalent (no ansible, no
rclone in scitq v2) and say so. Errors are one line, ``scitq-manage: error: ...``.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable, Sequence
from typing import Any, cast

from scitq.cli.v1_launch import requirements, run_v1_command
from scitq.cli.v1_manage_parser import manage_parser
from scitq.cli.v1_table import MAX_LENGTH_STR, plain_table, print_items
from scitq.errors import InvalidArgument, NotFound
from scitq.lib import Server
from scitq.lib.shapes import V1_ACCEPTED
from scitq.states import TaskStatus
from scitq.version import __version__

Action = Callable[[Server, argparse.Namespace], None]

#: v1's task counts per status, in its column order.
_COUNTS = [TaskStatus.ASSIGNED, V1_ACCEPTED, TaskStatus.RUNNING, TaskStatus.FAILED,
           TaskStatus.SUCCEEDED]  # fmt: skip
WORKER_COLUMNS = ["worker_id", "name", "status", "concurrency", "creation_date",
                  "last_contact_date", "batch"]  # fmt: skip
WORKER_LONG = ["provider", "region", "flavor", "ipv4", "ansible-active", "prefetch", *_COUNTS]
TASK_COLUMNS = ["task_id", "name", "status", "command", "creation_date", "modification_date",
                "status_date", "batch"]  # fmt: skip
TASK_LONG = ["container", "container_options", "input", "output", "resource",
             "required_task_ids", "retry", "run_timeout", "download_timeout"]  # fmt: skip
BATCH_COLUMNS = ["batch", TaskStatus.PENDING, *_COUNTS[1:], "workers"]
RECRUITER_COLUMNS = ["batch", "rank", "flavor", "region", "provider", "concurrency"]
RECRUITER_LONG = ["prefetch", "tasks_per_worker", "minimum_tasks", "maximum_workers"]
EXECUTION_COLUMNS = ["execution_id", "task_id", "worker_id", "status", "command",
                     "creation_date", "modification_date", "latest"]  # fmt: skip
FLAVOR_COLUMNS = ["name", "provider", "region", "cpu", "ram", "tags", "gpu", "gpumem", "disk",
                  "cost", "eviction", "available"]  # fmt: skip


def _worker_id(server: Server, args: argparse.Namespace) -> int:
    if args.id is not None:
        return int(args.id)
    if args.name is not None:
        for worker in server.workers():
            if worker["name"] == args.name:
                return int(worker["worker_id"])
        raise NotFound(f"No such worker {args.name}...")
    raise InvalidArgument("You must specify either name (-n) or id (-i)")


def _task_id(server: Server, args: argparse.Namespace) -> int:
    if args.id is not None:
        return int(args.id)
    if args.name is not None:
        for task in server.tasks(name=args.name):
            return int(task["task_id"])
        raise NotFound(f"No such task {args.name}...")
    raise InvalidArgument("You must specify either name (-n) or id (-i)")


# -- worker -------------------------------------------------------------------------------


def worker_list(server: Server, args: argparse.Namespace) -> None:
    filters = {key: value for key in ("batch", "status") if (value := getattr(args, key))}
    workers = server.workers(**filters)
    columns = WORKER_COLUMNS + (WORKER_LONG if args.long else [])
    if args.long:
        by_id = {worker["worker_id"]: worker for worker in workers}
        for row in server.workers_tasks():
            if row["worker_id"] in by_id:
                by_id[row["worker_id"]][row["status"]] = row["count"]
    print_items(workers, columns, not args.no_header)


def worker_deploy(server: Server, args: argparse.Namespace) -> None:
    server.worker_deploy(number=args.number, batch=args.batch, region=args.region,
                         flavor=args.flavor, concurrency=args.concurrency,
                         prefetch=args.prefetch, provider=args.provider)  # fmt: skip


def worker_delete(server: Server, args: argparse.Namespace) -> None:
    server.worker_delete(_worker_id(server, args))


def worker_update(server: Server, args: argparse.Namespace) -> None:
    server.worker_update(_worker_id(server, args), batch=args.batch, status=args.status,
                         concurrency=args.concurrency, prefetch=args.prefetch,
                         flavor=args.flavor)  # fmt: skip


# -- batch ----------------------------------------------------------------------------------


def batch_list(server: Server, args: argparse.Namespace) -> None:
    print_items(server.batches(), BATCH_COLUMNS, True)


def batch_stop(server: Server, args: argparse.Namespace) -> None:
    number = args.number or (
        signal.SIGQUIT if args.term else signal.SIGKILL if args.kill else
        signal.SIGTSTP if args.pause else 0
    )  # fmt: skip
    for batch in args.name:
        server.batch_stop(batch, int(number))


def batch_go(server: Server, args: argparse.Namespace) -> None:
    number = args.number or (signal.SIGCONT if args.cont else 0)
    for batch in args.name:
        server.batch_go(batch, int(number))


def batch_delete(server: Server, args: argparse.Namespace) -> None:
    for batch in args.name:
        server.batch_delete(batch)


# -- task -----------------------------------------------------------------------------------


def task_list(server: Server, args: argparse.Namespace) -> None:
    filters = {key: value for key in ("batch", "status") if (value := getattr(args, key))}
    columns = TASK_COLUMNS + (TASK_LONG if args.long else [])
    print_items(server.tasks(**filters), columns, not args.no_header, long=args.long)


def task_relaunch(server: Server, args: argparse.Namespace) -> None:
    task_id = _task_id(server, args)
    if server.task_get(task_id)["status"] == TaskStatus.PENDING:
        print("This task is already in queue")
    else:
        server.task_update(task_id, status=TaskStatus.PENDING)


def task_output(server: Server, args: argparse.Namespace) -> None:
    task_id = _task_id(server, args)
    executions = server.executions(task_id=task_id, latest=True)
    if not executions:
        raise NotFound(f"No execution for this task {task_id}")
    execution = executions[0]
    if args.output:
        print(execution["output"])
    elif args.error:
        print(execution["error"])
    else:
        print(plain_table([[execution["output"], execution["error"]]], ["output", "error"]))


def task_delete(server: Server, args: argparse.Namespace) -> None:
    server.task_delete(_task_id(server, args))


def task_update(server: Server, args: argparse.Namespace) -> None:
    required = None if args.requirements is None else requirements([args.requirements])
    server.task_update(
        _task_id(server, args), name=args.new_name, status=args.status, batch=args.batch,
        command=args.command, container=args.docker, container_options=args.option,
        input=args.input, output=args.output, required_task_ids=required,
        run_timeout=args.run_timeout, download_timeout=args.download_timeout,
    )  # fmt: skip


# -- execution ------------------------------------------------------------------------------


def execution_list(server: Server, args: argparse.Namespace) -> None:
    columns = EXECUTION_COLUMNS + (["output", "error", "output_files"] if args.long else [])
    filters: dict[str, Any] = {"no_output": not args.long}
    for key, value in (("batch", args.batch), ("status", args.status), ("task_id", args.id),
                       ("task_name", args.name), ("limit", args.limit)):  # fmt: skip
        if value:
            filters[key] = value
    found = server.executions(reverse=True, trunc=MAX_LENGTH_STR, **filters)
    print_items(found, columns, not args.no_header)


def execution_output(server: Server, args: argparse.Namespace) -> None:
    columns = [*EXECUTION_COLUMNS, "output", "error"]
    if args.columns:
        chosen = [column.strip() for column in args.columns.split(",")]
        unknown = [column for column in chosen if column not in columns]
        if unknown:
            raise InvalidArgument(
                f"Column {unknown[0]} is not available for executions, pick within {columns}"
            )
        columns = chosen
    filters: dict[str, Any] = {}
    for key, value in (("task_id", args.id), ("task_name", args.name),
                       ("execution_id", args.execution_id), ("status", args.status)):  # fmt: skip
        if value:
            filters[key] = value
    if args.limit and not args.relative_execution:
        filters["limit"] = args.limit
    for flag, column in ((args.output, "error"), (args.error, "output")):
        if flag and column in columns:
            columns.remove(column)
    found = server.executions(reverse=True, **filters)
    if args.relative_execution:  # 0: the latest of each task, -1 the one before...
        chosen_rows, current, rank = [], None, 0
        for execution in sorted(found, key=lambda e: (e["task_id"], -e["execution_id"])):
            if execution["task_id"] != current:
                current, rank = execution["task_id"], 0
            if rank == args.relative_execution:
                chosen_rows.append(execution)
            rank -= 1
        found = chosen_rows[: args.limit] if args.limit else chosen_rows
    print_items(found, columns, not args.no_header, long=True)


# -- recruiter, flavor, db ------------------------------------------------------------------


def recruiter_list(server: Server, args: argparse.Namespace) -> None:
    filters = {"batch": args.batch} if args.batch else {}
    rows = [{key.replace("worker_", ""): value for key, value in r.items()}
            for r in server.recruiters(**filters)]  # fmt: skip
    columns = RECRUITER_COLUMNS + (RECRUITER_LONG if args.long else [])
    print_items(rows, columns, not args.no_header)


def recruiter_create(server: Server, args: argparse.Namespace) -> None:
    server.recruiter_create(
        batch=args.batch, rank=args.rank, region=args.region, flavor=args.flavor,
        concurrency=args.concurrency, prefetch=args.prefetch, provider=args.provider,
        tasks_per_worker=args.tasks_per_worker or args.concurrency,
        minimum_tasks=args.minimum_tasks, maximum_workers=args.maximum_workers,
    )  # fmt: skip


def recruiter_update(server: Server, args: argparse.Namespace) -> None:
    server.recruiter_update(
        batch=args.batch, rank=args.rank, region=args.region, flavor=args.flavor,
        concurrency=args.concurrency, prefetch=args.prefetch, provider=args.provider,
        tasks_per_worker=args.tasks_per_worker, minimum_tasks=args.minimum_tasks,
        maximum_workers=args.maximum_workers,
    )  # fmt: skip


def recruiter_delete(server: Server, args: argparse.Namespace) -> None:
    server.recruiter_delete(batch=args.batch, rank=args.rank)


def flavor_list(server: Server, args: argparse.Namespace) -> None:
    flavors = server.flavors(
        min_cpu=args.min_cpu, min_ram=args.min_ram, min_disk=args.min_disk,
        max_eviction=args.max_eviction, limit=args.limit, provider=args.provider,
        region=args.region, protofilters=args.protofilters,
    )  # fmt: skip
    print_items(flavors, FLAVOR_COLUMNS, True, long=True)


def db_upgrade(server: Server, args: argparse.Namespace) -> None:
    from scitq.db import migrate
    from scitq.embedded import conninfo_for

    settings = server.client.settings
    migrate.upgrade(conninfo_for(settings.database))
    print("DB intialized" if args.action == "init" else "DB migrated")


def _refused(why: str) -> Action:
    def refuse(server: Server, args: argparse.Namespace) -> None:
        raise InvalidArgument(f"scitq-manage {args.object} {args.action}: {why} in scitq v2")

    REFUSED.add(refuse)
    return refuse


#: The actions that have no equivalent (they need no database).
REFUSED: set[Action] = set()


ACTIONS: dict[tuple[str, str], Action] = {
    ("worker", "list"): worker_list, ("worker", "deploy"): worker_deploy,
    ("worker", "delete"): worker_delete, ("worker", "update"): worker_update,
    ("batch", "list"): batch_list, ("batch", "stop"): batch_stop, ("batch", "go"): batch_go,
    ("batch", "delete"): batch_delete,
    ("task", "list"): task_list, ("task", "relaunch"): task_relaunch,
    ("task", "output"): task_output, ("task", "delete"): task_delete,
    ("task", "update"): task_update,
    ("execution", "list"): execution_list, ("execution", "output"): execution_output,
    ("recruiter", "list"): recruiter_list, ("recruiter", "create"): recruiter_create,
    ("recruiter", "update"): recruiter_update, ("recruiter", "delete"): recruiter_delete,
    ("flavor", "list"): flavor_list,
    ("db", "init"): db_upgrade, ("db", "upgrade"): db_upgrade,
    ("db", "upgrade-or-init"): db_upgrade,
    ("ansible", "path"): _refused("there are no ansible playbooks: providers deploy workers"),
    ("ansible", "install"): _refused("there is no ansible inventory"),
    ("ansible", "inventory"): _refused("there is no ansible inventory: use worker list -L"),
    ("debug", "run"): _refused("there is no debug runner: run the command by hand, then "
                               "`scitq task log`"),
    ("config", "rclone"): _refused("there is no rclone: set [transfer.s3] in each machine's "
                                   "configuration"),
}  # fmt: skip


def manage(argv: Sequence[str]) -> int:
    parser = manage_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"Version: {__version__}")
        return 0
    action = ACTIONS.get((str(args.object), str(getattr(args, "action", None))))
    if action is None:
        parser.print_help()
        return 0
    if action in REFUSED:
        action(cast(Server, None), args)
    with Server(args.server) as server:
        action(server, args)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``scitq-manage``)."""
    run_v1_command("scitq-manage", manage, argv)
