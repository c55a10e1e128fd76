"""``scitq web``: serve the dashboard (waitress), and manage its users.

Users live in the database; ``scitq web create-user NAME --role admin`` makes the first
admin (the password is asked twice on a terminal, else read from the first line of
standard input).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Any

import click

from scitq.cli import CliState, pass_state
from scitq.cli.output import Column, open_client, print_rows
from scitq.db.web_session import web_session_end_user, web_session_list
from scitq.db.web_user import web_user_delete, web_user_list, web_user_set
from scitq.errors import InvalidArgument, NotFound

logger = logging.getLogger(__name__)

#: The shortest password accepted.
MIN_PASSWORD = 8
USER_COLUMNS: list[Column] = [
    ("NAME", lambda u: u["name"]), ("ROLE", lambda u: u["role"]),
    ("CREATED", lambda u: u["created_at"]), ("LAST LOGIN", lambda u: u["last_login_at"]),
]  # fmt: skip
SESSION_COLUMNS: list[Column] = [
    ("USER", lambda s: s["name"]), ("ADDRESS", lambda s: s["address"]),
    ("SINCE", lambda s: s["created_at"]), ("LAST SEEN", lambda s: s["last_seen_at"]),
]  # fmt: skip


@click.group(invoke_without_command=True)
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [default: 5000].")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Requests at once.")
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None, threads: int | None) -> None:
    """Serve the web dashboard until Ctrl-C (or manage its users).

    Settings: the [web] table of the configuration file and SCITQ_WEB_* variables
    (docs/web.md); these options override them. Behind a reverse proxy, see
    trusted_header in docs/web.md.

    Exit codes: 0; 2 invalid configuration; 3 database unreachable.
    """
    if ctx.invoked_subcommand is not None:
        return
    import waitress

    from scitq.web import create_app
    from scitq.web import db as web_db

    state = ctx.find_object(CliState)
    assert state is not None
    settings = state.settings()
    overrides: dict[str, Any] = {"host": host, "port": port, "threads": threads}
    web_settings = dataclasses.replace(
        settings.web, **{key: value for key, value in overrides.items() if value is not None}
    )
    settings = settings.replace(web=web_settings)
    app = create_app(settings)
    click.echo(f"scitq web: serving on http://{web_settings.host}:{web_settings.port}/")
    sys.stdout.flush()
    try:
        waitress.serve(
            app,
            host=web_settings.host,
            port=web_settings.port,
            threads=web_settings.threads,
            ident="scitq",
            _quiet=not state.verbose,
        )
    except OSError as exc:  # the port is taken, or the host is not ours
        where = f"{web_settings.host}:{web_settings.port}"
        raise InvalidArgument(f"cannot serve the dashboard on {where}: {exc.strerror}") from None
    finally:
        web_db.close(app)


def _read_password() -> str:
    if sys.stdin.isatty():
        password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD:
        raise InvalidArgument(f"the password must have at least {MIN_PASSWORD} characters")
    return password


@web.command("create-user")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["admin", "viewer"]),
    default="viewer",
    show_default=True,
    help="admin may act (pause, retry, edit workers...); viewer may only look.",
)
@pass_state
def create_user(state: CliState, name: str, role: str) -> None:
    """Create a dashboard user, or set the password and role of an existing one (which
    ends their open sessions: they log in again).

    The password is asked on a terminal, else read from the first line of stdin:
    `echo "$PASSWORD" | scitq web create-user alice --role admin`.

    Exit codes: 0; 2 invalid name, role or password; 3 database unreachable.
    """
    from scitq.web.auth import hash_password

    password = _read_password()
    with open_client(state) as client:
        row = web_user_set(client.connection, name, hash_password(password), role)
    verb = "created" if row["created"] else "updated"
    click.echo(f"user {row['name']} {verb} (role {row['role']})")


@web.command("delete-user")
@click.argument("name")
@pass_state
def delete_user(state: CliState, name: str) -> None:
    """Delete a dashboard user (their open sessions end with it).

    Exit codes: 0; 4 no such user.
    """
    with open_client(state) as client:
        if not web_user_delete(client.connection, name):
            raise NotFound(f"no dashboard user named {name!r}: see `scitq web users`")
    click.echo(f"user {name} deleted")


@web.command("users")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def users(state: CliState, as_json: bool) -> None:
    """List the dashboard users (never their password hashes).

    Exit codes: 0; 3 database unreachable.
    """
    with open_client(state) as client:
        rows = web_user_list(client.connection)
    print_rows(rows, USER_COLUMNS, as_json=as_json)


@web.command("sessions")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def sessions(state: CliState, name: str | None, as_json: bool) -> None:
    """List the open dashboard sessions (of user NAME, or of everyone).

    Exit codes: 0; 3 database unreachable.
    """
    with open_client(state) as client:
        rows = web_session_list(client.connection, name)
    print_rows(rows, SESSION_COLUMNS, as_json=as_json)


@web.command("end-sessions")
@click.argument("name")
@pass_state
def end_sessions(state: CliState, name: str) -> None:
    """Log user NAME out everywhere: every open session of theirs ends at once.

    Exit codes: 0; 4 no such user.
    """
    with open_client(state) as client:
        ended = web_session_end_user(client.connection, name, "admin")
    logger.info("ended the sessions of %s", name, extra={"action": "end_sessions", "user": name,
                                                        "ended": ended})  # fmt: skip
    click.echo(f"{ended} session{'' if ended == 1 else 's'} of {name} ended")
