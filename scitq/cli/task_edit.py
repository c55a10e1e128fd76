"""``scitq task update`` and ``scitq task rerun``: edit tasks, run finished ones again.

The ``task`` group of `scitq.cli.task` with these two commands added: the CLI loads the
group from here.
"""

from __future__ import annotations

from typing import Any

import click

from scitq.cli import CliState, pass_state
from scitq.cli.launch import parse_env
from scitq.cli.output import open_client, print_json
from scitq.cli.task import _existing, _report, ids_argument, parse_ids, task
from scitq.errors import InvalidArgument

__all__ = ["task"]

#: --clear FIELD: the fields that may be emptied, and the value that empties them.
CLEARABLE: dict[str, Any] = {
    "name": None, "container": None, "container_options": None, "output": None,
    "download_timeout": None, "run_timeout": None, "inputs": [], "resources": [], "env": {},
    "tags": [],
}  # fmt: skip
#: Option names that differ from the field they set.
FIELD_OF = {"retry_delay": "retry_delay_seconds", "download_timeout": "download_timeout_seconds",
            "run_timeout": "run_timeout_seconds"}  # fmt: skip


@task.command()
@ids_argument
@click.option("-c", "--command", help="The new command (as stored: see --shell).")
@click.option("--shell/--no-shell", default=None, help="Run the command with sh -c, or exec it.")
@click.option("-n", "--name", help="The new name.")
@click.option("-b", "--batch", help="Move the tasks to this batch (created if missing).")
@click.option("-d", "--docker", "--container", "container", metavar="IMAGE", help="Image.")
@click.option("-O", "--container-options", metavar="OPTIONS", help="Options of docker/podman run.")
@click.option("-i", "--input", "inputs", multiple=True, metavar="URI",
              help="Inputs (repeatable; replace the task's inputs).")  # fmt: skip
@click.option("-r", "--resource", "resources", multiple=True, metavar="URI",
              help="Resources (repeatable; replace the task's resources).")  # fmt: skip
@click.option("-o", "--output", metavar="URI", help="The new output folder.")
@click.option("--retry", "--retries", "retries", type=click.IntRange(0, 1_000_000),
              help="Retries after a failure.")  # fmt: skip
@click.option("--requeues", type=click.IntRange(0, 1_000_000), help="Free requeues.")
@click.option("--retry-delay", type=click.FloatRange(0), help="Seconds before a retry.")
@click.option("--download-timeout", type=click.FloatRange(0, min_open=True), help="Seconds.")
@click.option("--run-timeout", type=click.FloatRange(0, min_open=True), help="Seconds.")
@click.option("-p", "--priority", type=click.IntRange(-(2**31), 2**31 - 1), help="Priority.")
@click.option("-e", "--env", multiple=True, metavar="NAME=VALUE",
              help="Environment (repeatable; replaces the task's).")  # fmt: skip
@click.option("--tag", "tags", multiple=True, help="Tags (repeatable; replace the task's).")
@click.option("--use-cache/--no-use-cache", default=None, help="scitq v1's task cache.")
@click.option("--clear", "clear", multiple=True, type=click.Choice(sorted(CLEARABLE)),
              help="Empty this field (repeatable).")  # fmt: skip
@click.option("--rerun/--no-rerun", default=None,
              help="Run the tasks again whatever changed / never (default: when what runs "
                   "changes).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_state
def update(state: CliState, /, task_ids: tuple[str, ...], clear: tuple[str, ...],
           rerun: bool | None, as_json: bool, **options: Any) -> None:  # fmt: skip
    """Change fields of tasks (scitq v1's task update and modify).

    Changing what runs (command, shell, container, its options, inputs, resources,
    output, env, timeouts, use-cache) runs each task again with it: a running attempt is
    killed first, a finished task (succeeded too) is rerun; each gets a fresh retry
    budget, and earlier attempts are kept. Other fields (name, batch, priority, retries,
    requeues, retry delay, tags) change in place. Every change goes to the task's event
    log (`scitq task show`). Dependencies cannot be changed.

    Exit codes: 0; 2 invalid option; 3 database unreachable; 4 unknown task.
    """
    changes: dict[str, Any] = {}
    for option, value in options.items():
        if value is None or value == ():
            continue
        if option == "env":
            value = parse_env(value)
        changes[FIELD_OF.get(option, option)] = list(value) if isinstance(value, tuple) else value
    for field in clear:
        if FIELD_OF.get(field, field) in changes:
            raise InvalidArgument(f"--clear {field} and a new {field}: give one of them")
        changes[FIELD_OF.get(field, field)] = CLEARABLE[field]
    if not changes:
        raise click.UsageError("nothing to change: give an option such as --command or --retries")
    with open_client(state) as client:
        ids = list(_existing(client, parse_ids(task_ids)))
        done = client.update(ids, rerun=rerun, **changes)
    if as_json:
        print_json([{"id": i, "status": s, "rerun": r} for i, (s, r) in sorted(done.items())])
        return
    for task_id, (status, again) in sorted(done.items()):
        click.echo(f"task {task_id} updated: now {status}{', runs again' if again else ''}")


@task.command()
@ids_argument
@pass_state
def rerun(state: CliState, task_ids: tuple[str, ...]) -> None:
    """Run finished tasks again, succeeded ones too (ids: 12 13, 12,13 or 12-20).

    Each gets a fresh retry budget and a new attempt; earlier attempts and their output
    are kept (`scitq task log --attempt N`). A running task is killed and requeued.
    Dependents that have not started wait for it again.

    Exit codes: 0; 4 unknown task; 5 no task could be rerun.
    """
    with open_client(state) as client:
        before = _existing(client, parse_ids(task_ids))
        _report(client.rerun(before), before, "rerun", "waiting, pending and paused tasks")
