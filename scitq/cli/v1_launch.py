"""``scitq-launch``: scitq v1's command to queue one task, with v1's flags and output.

    scitq-launch [-d IMAGE [-O OPTIONS]] [-u UID] [-g GID] [-s SERVER] [-t] [-n NAME]
                 [-b BATCH] [-i URIS]... [-r URIS]... [-o URI] [-R IDS]... [--retry N]
                 [--run-timeout S] [--download-timeout S] [--use-cache] [--] COMMAND...

The options stop at the first word that is none (or at ``--``); the command's words are
kept as they were given. ``-i`` and ``-r`` take one URI or several separated by spaces,
and may be repeated. It prints ``Task queued with task id: N`` (``-t``: the command that
would be sent, and sends nothing). The native ``scitq launch`` takes the same flags.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence

from scitq.cli import as_scitq_error, one_line
from scitq.compat import split_uris
from scitq.errors import InvalidArgument

SERVER_HELP = "the scitq server (default: $SCITQ_SERVER, else the configured database)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scitq-launch", description="Queue a task in scitq (scitq v1's scitq-launch)."
    )
    add = parser.add_argument
    add("-d", "--docker", help="run the task in this container image")
    add("-O", "--option", default="", help="options of docker run (with -d)")
    add("-u", "--uid", type=int, help="run as this user id (docker -u, or sudo)")
    add("-g", "--gid", type=int, help="run with this group id")
    add("-s", "--server", help=SERVER_HELP)
    add("-t", "--test", action="store_true", help="print the command instead of queuing it")
    add("-n", "--name", help="the task's name")
    add("-b", "--batch", help="the task's batch (default: Default)")
    add("-i", "--input", action="append", default=[], help="input URIs (repeatable)")
    add("-r", "--resource", action="append", default=[], help="resource URIs (repeatable)")
    add("-o", "--output", help="the output folder URI")
    add("-R", "--requirements", action="append", default=[],
        help="ids of tasks to succeed first (comma- or space-separated, repeatable)")  # fmt: skip
    add("--retry", type=int, help="retries allowed")
    add("--run-timeout", type=int, help="seconds")
    add("--download-timeout", type=int, help="seconds")
    add("--use-cache", action="store_true", help="succeed at once if an identical task did")
    add("command", nargs=argparse.REMAINDER, help="the command (after -- if it starts with -)")
    return parser


def requirements(values: Sequence[str]) -> list[int]:
    ids = []
    for value in values:
        for part in value.replace(",", " ").split():
            if not part.isdigit():
                raise InvalidArgument(f"-R/--requirements takes task ids, not {part!r}")
            ids.append(int(part))
    return ids


def launch(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    words = list(args.command)
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        parser.error("give the command to run (after -- if it starts with -)")
    if args.option and args.docker is None:
        parser.error("Do not set Docker options if you do not specify a docker.")
    command, options = shlex.join(words), args.option
    if args.docker is not None and args.uid is not None:
        user = f"{args.uid}:{args.gid}" if args.gid is not None else str(args.uid)
        options = f"-u {user} {options}".strip()
    elif args.uid is not None:
        group = ["-g", f"#{args.gid}"] if args.gid is not None else []
        command = shlex.join(["sudo", "-u", f"#{args.uid}", *group, *words])
    if args.test:
        print(f"Command that would be sent: {command}")
        return 0
    from scitq.lib import Server  # the database driver, only when something is sent

    with Server(args.server) as server:
        task = server.task_create(
            command, name=args.name, batch=args.batch, container=args.docker,
            container_options=options, input=split_uris(args.input, "-i/--input") or None,
            output=args.output, resource=split_uris(args.resource, "-r/--resource") or None,
            required_task_ids=requirements(args.requirements) or None, retry=args.retry,
            download_timeout=args.download_timeout, run_timeout=args.run_timeout,
            use_cache=args.use_cache,
        )  # fmt: skip
    print(f"Task queued with task id: {task['task_id']}")
    return 0


def run_v1_command(
    prog: str, function: Callable[[list[str]], int], argv: Sequence[str] | None
) -> None:
    """Run a v1 command; a scitq error ends it with one line, ``<prog>: error: ...``."""
    try:
        code = function(list(sys.argv[1:] if argv is None else argv))
    except Exception as exc:
        error = as_scitq_error(exc)
        if error is None:
            raise
        print(f"{prog}: error: {one_line(str(error))}", file=sys.stderr)
        code = error.exit_code
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``scitq-launch``)."""
    run_v1_command("scitq-launch", launch, argv)
