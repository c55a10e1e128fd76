"""``scitq completion SHELL``: the script that makes the shell complete scitq commands.

    eval "$(scitq completion bash)"     # in ~/.bashrc
    eval "$(scitq completion zsh)"      # in ~/.zshrc

The script calls ``scitq`` back with ``_SCITQ_COMPLETE`` set (click's completion), so
it completes the subcommands and options of the installed version.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    Add ``eval "$(scitq completion bash)"`` to ~/.bashrc (zsh: ~/.zshrc).
    """
    from scitq.cli import scitq

    completer = get_completion_class(shell)
    assert completer is not None  # the choices are click's own shells
    click.echo(completer(scitq, {}, "scitq", "_SCITQ_COMPLETE").source())
