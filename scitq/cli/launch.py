"""``scitq launch``: submit one task from the command line, or many from a JSON-lines file.

The options are those of scitq v1's ``scitq-launch`` (``-d``, ``-O``, ``-u``, ``-g``,
``-n``, ``-b``, ``-i``, ``-r``, ``-o``, ``-R``, ``--retry``, ``--run-timeout``,
``--download-timeout``, ``-t``) plus ``--shell``, ``--priority``, ``--env``, ``--tag``,
``--retry-delay`` and ``--from-file``.
"""

from __future__ import annotations

import json
import re
import shlex
from array import array
from collections.abc import Iterator
from typing import IO, Any

import click

from scitq.cli import CliState, pass_state
from scitq.cli.options import INT_MAX, MAX_SECONDS, within
from scitq.cli.output import open_client, print_json, print_json_array
from scitq.client import DEFAULT_BATCH, SUBMIT_CHUNK, TASK_FIELDS, as_dict
from scitq.errors import InvalidArgument, InvalidUri, NotFound
from scitq.transfer import Role, validate_uri

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_env(values: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in values:
        name, equal, text = value.partition("=")
        if not equal or not _ENV_NAME.match(name):
            raise InvalidArgument(f"-e {value!r}: give NAME=VALUE (NAME of letters, digits, _)")
        env[name] = text
    return env


def parse_requirements(values: tuple[str, ...]) -> dict[str, list[Any]]:
    """``-R`` values: task ids, or names of tasks of the same batch (comma-separated)."""
    ids: list[int] = []
    names: list[str] = []
    for value in values:
        for part in filter(None, (piece.strip() for piece in value.split(","))):
            if part.isdigit():
                ids.append(int(part))
            else:
                names.append(part)
    found: dict[str, list[Any]] = {}
    if ids:
        found["depends_on"] = ids
    if names:
        found["depends_on_names"] = names
    return found


def build_command(
    words: tuple[str, ...], shell: bool, uid: int | None, gid: int | None, container: str | None
) -> tuple[str, bool]:
    """The stored command and shell flag: exec words are joined with shell quoting (the
    agent splits them back), a shell command is kept as written."""
    command = " ".join(words) if shell else shlex.join(words)
    if uid is not None and container is None:  # v1: run natively as that user through sudo
        sudo = ["sudo", "-u", f"#{uid}"] + (["-g", f"#{gid}"] if gid is not None else [])
        inner = ["sh", "-c", command] if shell else list(words)
        return shlex.join([*sudo, *inner]), False
    return command, shell


def task_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """Task fields from the options given (those not given are left out)."""
    if options["gid"] is not None and options["uid"] is None:
        raise InvalidArgument("-g/--gid needs -u/--uid")
    container_options = options["container_options"]
    if options["uid"] is not None and options["container"] is not None:
        user = f"{options['uid']}" + (f":{options['gid']}" if options["gid"] is not None else "")
        container_options = " ".join(filter(None, [f"-u {user}", container_options]))
    uris: list[tuple[str, Role, Any]] = [
        ("-i/--input", "input", options["inputs"]),
        ("-r/--resource", "resource", options["resources"]),
        ("-o/--output", "output", [options["output"]] if options["output"] else []),
    ]
    for flag, role, values in uris:  # refused before anything is queued
        for value in values:
            try:
                validate_uri(value, role)
            except InvalidUri as error:
                raise InvalidUri(f"{flag}: {error}") from None
    fields: dict[str, Any] = {
        "name": options["name"],
        "container": options["container"],
        "container_options": container_options,
        "inputs": list(options["inputs"]) or None,
        "resources": list(options["resources"]) or None,
        "output": options["output"],
        "retries": options["retries"],
        "requeues": options["requeues"],
        "retry_delay_seconds": options["retry_delay"],
        "download_timeout_seconds": options["download_timeout"],
        "run_timeout_seconds": options["run_timeout"],
        "priority": options["priority"],
        "env": parse_env(options["env"]) or None,
        "tags": list(options["tags"]) or None,
        "use_cache": options["use_cache"] or None,
        **parse_requirements(options["requirements"]),
    }
    return {key: value for key, value in fields.items() if value is not None}


def _numbered_lines(stream: IO[str]) -> Iterator[tuple[int, str]]:
    number = 0
    while True:
        try:
            line = stream.readline()
        except UnicodeDecodeError:
            raise InvalidArgument(
                f"--from-file: line {number + 1} or one soon after is not valid UTF-8 text"
            ) from None
        if not line:
            return
        number += 1
        yield number, line


def read_tasks(
    stream: IO[str], defaults: dict[str, Any], lines: array[int]
) -> Iterator[dict[str, Any]]:
    """Tasks of a JSON-lines file merged over ``defaults``; records each task's line."""
    for number, line in _numbered_lines(stream):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            task = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidArgument(f"line {number}: invalid JSON ({error.msg})") from None
        if not isinstance(task, dict):
            raise InvalidArgument(f"line {number}: a JSON object of task fields is expected")
        unknown = sorted(set(task) - TASK_FIELDS)
        if unknown:
            raise InvalidArgument(f"line {number}: unknown field {unknown[0]!r}")
        if isinstance(task.get("command"), list):
            words = tuple(str(word) for word in task["command"])
            shell = bool(task.get("shell", defaults.get("shell")))
            task["command"] = " ".join(words) if shell else shlex.join(words)
        lines.append(number)
        yield {**defaults, **task}


def _with_lines(error: InvalidArgument | NotFound, lines: array[int]) -> Exception:
    def line_of(match: re.Match[str]) -> str:
        position = int(match[1])
        return f"line {lines[position - 1]}" if 0 < position <= len(lines) else match[0]

    return type(error)(re.sub(r"task #(\d+)", line_of, str(error)))


@click.command(context_settings={"allow_interspersed_args": False})
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="[--] COMMAND...")
@click.option("-b", "--batch", default=DEFAULT_BATCH, show_default=True,
              help="Batch to add the task(s) to (created if needed).")  # fmt: skip
@click.option("-n", "--name", help="Task name (dependencies can refer to it).")
@click.option("-d", "--docker", "--container", "container", metavar="IMAGE",
              help="Run in this container image (docker or podman on the worker, which "
              "pulls it on first use unless its agent runs with --no-pull).")  # fmt: skip
@click.option("-O", "--option", "--container-options", "container_options", metavar="OPTIONS",
              help="Extra options for docker/podman run.")  # fmt: skip
@click.option("-u", "--uid", type=int, callback=within(0, INT_MAX),
              help="Run as this user id (container or sudo).")  # fmt: skip
@click.option("-g", "--gid", type=int, callback=within(0, INT_MAX),
              help="Run with this group id (with --uid).")  # fmt: skip
@click.option("-i", "--input", "inputs", multiple=True, metavar="URI", help="Input (repeatable).")
@click.option("-r", "--resource", "resources", multiple=True, metavar="URI",
              help="Resource shared by the worker's tasks (repeatable).")  # fmt: skip
@click.option("-o", "--output", metavar="URI", help="Where $OUTPUT is uploaded at the end.")
@click.option("-R", "--requirements", "--depends-on", "requirements", multiple=True,
              metavar="IDS|NAMES", help="Tasks to succeed first: ids or names.")  # fmt: skip
@click.option("--retry", "--retries", "retries", type=click.IntRange(0),
              callback=within(0, INT_MAX), help="Retries allowed.")  # fmt: skip
@click.option("--requeues", type=click.IntRange(0, 1_000_000),
              help="Free requeues of lost executions (default: the batch's, or 3).")  # fmt: skip
@click.option("--retry-delay", type=click.FloatRange(0), callback=within(0, MAX_SECONDS),
              help="Base of the retry back-off (s).")  # fmt: skip
@click.option("--download-timeout", type=click.FloatRange(0, min_open=True),
              callback=within(0, MAX_SECONDS), help="Seconds.")  # fmt: skip
@click.option("--run-timeout", type=click.FloatRange(0, min_open=True),
              callback=within(0, MAX_SECONDS), help="Seconds.")  # fmt: skip
@click.option("--shell", is_flag=True, help="Run the command with sh -c (pipes, globs, ...).")
@click.option("-p", "--priority", type=int, callback=within(-INT_MAX - 1, INT_MAX),
              help="Higher is claimed first (default 0).")  # fmt: skip
@click.option("-e", "--env", multiple=True, metavar="NAME=VALUE", help="Environment variable.")
@click.option("--tag", "tags", multiple=True, help="A free label (repeatable).")
@click.option("--use-cache", is_flag=True,
              help="Succeed without running if an earlier task of the same command, container, "
                   "inputs and output succeeded and its output is still there.")  # fmt: skip
@click.option("--from-file", "from_file", type=click.File("r"), metavar="FILE",
              help="Submit the tasks of a JSON-lines file (- for stdin).")  # fmt: skip
@click.option("-t", "--test", "--dry-run", "dry_run", is_flag=True,
              help="Print the task(s) as JSON instead of submitting.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the submitted task(s) as JSON.")
@pass_state
def launch(state: CliState, /, words: tuple[str, ...], **options: Any) -> None:
    """Submit a task: the command after the options (or after --), quoting preserved.

    Without --shell the command is exec'd: its words are stored quoted (shlex.join) and
    split back by the agent. With --shell the command is one string run with sh -c
    (several words are joined with spaces). Prints the task id.

    With --from-file, each line of FILE is a JSON object of task fields (command, name,
    shell, container, inputs, resources, output, retries, env, tags, depends_on,
    depends_on_names, ...; see docs/sql-api.md); the options given here are defaults for
    every line. Tasks are sent 5,000 at a time in one transaction: all are submitted or
    none. depends_on_names finds tasks of earlier lines and of the batch.

    Exit codes: 0; 2 invalid option, line or dependency cycle; 3 database unreachable;
    4 unknown dependency.
    """
    from_file: IO[str] | None = options.pop("from_file")
    batch, dry_run, as_json = options.pop("batch"), options.pop("dry_run"), options.pop("as_json")
    defaults = task_defaults(options)
    if from_file is not None:
        if words:
            raise click.UsageError("give a command or --from-file, not both")
        if options["shell"]:
            defaults["shell"] = True
        _launch_file(state, batch, from_file, defaults, dry_run, as_json)
        return
    if not words:
        raise click.UsageError("give the command to run (after -- if it starts with -)")
    if not words[0].strip():
        raise InvalidArgument("the command is empty: its first word is blank")
    if len(words) == 1 and not options["shell"] and re.search(r"\s", words[0]):
        note = f"note: the command is one word with spaces, {words[0]!r}; give its words"
        click.echo(f"{note} separately or use --shell to run a command line", err=True)
    command, shell = build_command(
        words, options["shell"], options["uid"], options["gid"], options["container"]
    )
    task = {**defaults, "command": command, **({"shell": True} if shell else {})}
    if dry_run:
        print_json({"batch": batch, **task})
        return
    with open_client(state) as client:
        submitted = client.submit_many(batch, [task])[0]
    if as_json:
        print_json({"batch": batch, **as_dict(submitted)})
    else:
        click.echo(submitted.id)


def _launch_file(
    state: CliState, batch: str, stream: IO[str], defaults: dict[str, Any], dry_run: bool,
    as_json: bool,
) -> None:  # fmt: skip
    lines: array[int] = array("q")
    tasks = read_tasks(stream, defaults, lines)
    if dry_run:
        for task in tasks:
            click.echo(json.dumps(task))
        return
    with open_client(state) as client:
        try:
            submitted = client.submit_many(batch, tasks, chunk_size=SUBMIT_CHUNK)
        except (InvalidArgument, NotFound) as error:
            raise _with_lines(error, lines) from error
    if as_json:
        print_json_array(as_dict(task) for task in submitted)
    else:
        first, last = submitted[0].id, submitted[-1].id
        click.echo(f"submitted {len(submitted)} task(s) to batch {batch} (ids {first}-{last})")
