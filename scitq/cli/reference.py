"""The CLI reference (docs/cli.md), generated from the commands' own help.

    python -m scitq.cli.reference > docs/cli.md

A test compares docs/cli.md with this output, so the reference cannot drift from the
commands.
"""

from __future__ import annotations

import click

from scitq.cli import scitq

HEADER = """# `scitq` command reference

Generated from the commands' help by `python -m scitq.cli.reference > docs/cli.md`
(a test keeps it current). Every command prints its own with `--help`. Errors are one line
on standard error, `scitq: error: <what is wrong>`, and an exit code:

| code | meaning |
| --- | --- |
| 0 | done |
| 1 | another error |
| 2 | bad arguments or configuration (also click's usage errors), malformed URI |
| 3 | the database cannot be reached |
| 4 | not found (task, batch, worker...) |
| 5 | invalid transition (the object's state does not allow it) |
| 6 | an execution is no longer held (agents) |
| 7 | permission denied, or a worker owned by another role |
| 8 | `scitq batch wait`: the batch ended with failed tasks |
| 9 | a wait timed out |
| 10 | a transfer failed (`scitq fetch`) |
"""


def _walk(command: click.Command, path: list[str], ctx: click.Context) -> list[str]:
    sections: list[str] = []
    level = "#" * min(len(path) + 1, 4)
    help_text = command.get_help(ctx).replace("Usage: cli", "Usage: scitq")
    sections.append(f"{level} `{' '.join(path)}`\n\n```text\n{help_text}\n```\n")
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = click.Context(sub, info_name=name, parent=ctx)
            sections += _walk(sub, [*path, name], sub_ctx)
    return sections


def reference() -> str:
    """The whole reference, as Markdown."""
    ctx = click.Context(scitq, info_name="scitq", terminal_width=100, max_content_width=100)
    return HEADER + "\n" + "\n".join(_walk(scitq, ["scitq"], ctx))


if __name__ == "__main__":  # pragma: no cover
    print(reference(), end="")
