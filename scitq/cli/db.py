"""``scitq db``: upgrade, inspect, expose and stop the database; create login roles."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import psycopg
from alembic.util import CommandError
from psycopg import sql
from rich.table import Table
from rich.text import Text

from scitq.cli import CliState, as_scitq_error, console, mask_conninfo, pass_state, stop_signals
from scitq.config import DatabaseSettings
from scitq.db import migrate
from scitq.db.connection import connect, translate_error
from scitq.db.report import schema_counts
from scitq.db.worker import password_verifier, worker_create_role
from scitq.embedded import conninfo_for
from scitq.embedded.server import EmbeddedServer
from scitq.errors import DatabaseError, InvalidArgument, PermissionDenied

#: Login role names accepted (the rule of scitq.worker_create_role_v1).
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,62}$")
#: Read by `scitq db serve` when no --password-file is given.
PASSWORD_VARIABLE = "SCITQ_DB_PASSWORD"
#: Group roles that `create-role --admin` / `--reader` / `--agent` make members of.
GROUP_ROLES = {"admin": "scitq_admin", "reader": "scitq_reader", "agent": "scitq_agent"}
_WATCH_SECONDS = 2.0  # how often `db serve` checks that the server still runs

password_file_option = click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the password from this file (its first line).",
)


@click.group()
def db() -> None:
    """Manage the database: upgrade, status, serve, stop, create-role."""


# -- helpers ------------------------------------------------------------------------------


def read_password_file(path: Path) -> str:
    """The first line of a password file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0]:
        raise InvalidArgument(f"the password file {path} is empty")
    return lines[0]


def serve_password(password_file: Path | None, environ: dict[str, str] | None = None) -> str:
    """The password for `db serve`: the file, else $SCITQ_DB_PASSWORD, else a prompt."""
    if password_file is not None:
        return read_password_file(password_file)
    env = dict(os.environ) if environ is None else environ
    if env.get(PASSWORD_VARIABLE):
        return env[PASSWORD_VARIABLE]
    password: str = click.prompt(
        "Password for TCP connections (role postgres)", hide_input=True, confirmation_prompt=True
    )
    if not password:
        raise InvalidArgument("the password must not be empty")
    return password


def default_agent_role(worker_name: str) -> str:
    """``scitq_worker_<name>``, lower-cased, other characters replaced by ``_``."""
    return ("scitq_worker_" + re.sub(r"[^a-z0-9_.-]", "_", worker_name.lower()))[:63]


def check_role_name(role: str) -> None:
    if not ROLE_NAME.match(role):
        raise InvalidArgument(
            f"invalid role name {role!r}: use lower-case letters, digits, '_', '.' or '-', "
            "starting with a letter or '_', at most 63 characters"
        )


def _embedded_server(database: DatabaseSettings, command: str) -> EmbeddedServer:
    if not database.is_embedded:
        assert database.url is not None
        raise InvalidArgument(
            f"`scitq db {command}` works on the embedded server only, but the database is "
            f"{mask_conninfo(database.url)}: drop --database-url and SCITQ_DATABASE_URL to "
            "use the embedded server"
        )
    return EmbeddedServer(database.data_dir)


def _conninfo(database: DatabaseSettings) -> str:
    """The conninfo of the configured database, starting the embedded server if needed."""
    if database.url is not None:
        return database.url
    return EmbeddedServer(database.data_dir).ensure_running()


def _postgresql_version(conn: psycopg.Connection[Any]) -> str:
    number = conn.info.server_version  # e.g. 160004 for 16.4
    return f"{number // 10000}.{number % 10000}"


def _public_host(host: str) -> str:
    """A host name that other machines can use for ``host`` (a socket dir or wildcard)."""
    host = host.split(",")[0].strip()
    if not host or host.startswith("/") or host in ("*", "0.0.0.0", "::"):
        host = socket.getfqdn()
    return f"[{host}]" if ":" in host else host


def _role_url(
    conn: psycopg.Connection[Any], role: str, password: str, embedded: EmbeddedServer | None
) -> str:
    """A URI logging in as ``role`` to the database ``conn`` is connected to.

    For the embedded server: its TCP address when `db serve` runs, else this host.
    """
    host, port = conn.info.host, conn.info.port
    if embedded is not None and (status := embedded.status()).tcp_listen:
        host, port = status.tcp_listen, status.port or port
    return (
        f"postgresql://{quote(role, safe='')}:{quote(password, safe='')}@"
        f"{_public_host(host)}:{port}/{quote(conn.info.dbname, safe='')}"
    )


# -- upgrade ------------------------------------------------------------------------------


@db.command()
@pass_state
def upgrade(state: CliState) -> None:
    """Migrate the database to the current schema.

    The embedded server is started first if needed.
    """
    conninfo = _conninfo(state.settings().database)
    with connect(conninfo):  # a clear error if unreachable, before Alembic
        pass
    head = migrate.head_revision()
    before = migrate.current_revision(conninfo)
    out = console()
    if before == head:
        out.print(Text(f"database already at revision {head} (head)"))
        return
    try:
        migrate.upgrade(conninfo)
    except CommandError as exc:  # e.g. a revision this version of scitq does not know
        raise DatabaseError(
            f"cannot migrate from revision {before}: {exc} (is this scitq older than the database?)"
        ) from exc
    after = migrate.current_revision(conninfo)
    out.print(Text(f"database migrated from {before or 'empty'} to {after}"))


# -- status -------------------------------------------------------------------------------


def database_status(database: DatabaseSettings) -> dict[str, Any]:
    """The server, PostgreSQL version, migration state and row counts, as plain data.

    The embedded server is described without being started.
    """
    report: dict[str, Any] = {
        "server": None,
        "postgresql_version": None,
        "migration": None,
        "counts": None,
    }
    if database.url is None:
        server = EmbeddedServer(database.data_dir)
        status = server.status()
        report["server"] = {
            "embedded": True,
            "data_dir": str(server.data_dir),
            "running": status.running,
            "pid": status.pid,
            "major_version": status.version,
            "listen": status.tcp_listen,
            "port": status.port,
        }
        if not status.running:
            return report
        conninfo = server.ensure_running()
    else:
        report["server"] = {"embedded": False, "url": mask_conninfo(database.url)}
        conninfo = database.url
    with connect(conninfo) as conn:
        report["postgresql_version"] = _postgresql_version(conn)
        head = migrate.head_revision()
        try:
            current = migrate.current_revision(conninfo)
        except Exception as exc:  # SQLAlchemy wraps psycopg's errors
            error = as_scitq_error(exc)
            if not isinstance(error, PermissionDenied):
                raise
            report["migration"] = {"current": None, "head": head, "error": str(error)}
            return report
        report["migration"] = {"current": current, "head": head, "up_to_date": current == head}
        if current is not None:
            try:
                report["counts"] = {k: int(v) for k, v in schema_counts(conn).items()}
            except PermissionDenied as error:
                report["counts"] = {"error": str(error)}
    return report


def _render_status(report: dict[str, Any]) -> Table:
    server = report["server"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    if server["embedded"]:
        if server["running"]:
            state = f"running (pid {server['pid']}, PostgreSQL {server['major_version']})"
        else:
            state = "not running (any scitq command that needs it starts it)"
        grid.add_row("Server", Text(f"embedded, {state}"))
        grid.add_row("Data", Text(server["data_dir"]))
        if server["running"]:
            tcp = f"{server['listen']} port {server['port']}" if server["listen"] else "off"
            grid.add_row("TCP", Text(tcp))
    else:
        grid.add_row("Server", Text(server["url"]))
    if report["postgresql_version"]:
        grid.add_row("PostgreSQL", Text(report["postgresql_version"]))
    migration = report["migration"]
    if migration is not None:
        if "error" in migration:
            text = f"unknown ({migration['error']})"
        elif migration["up_to_date"]:
            text = f"{migration['current']} (head)"
        else:
            text = (
                f"{migration['current'] or 'none (empty database)'}, head is "
                f"{migration['head']}: run `scitq db upgrade`"
            )
        grid.add_row("Migration", Text(text))
    counts = report["counts"]
    if counts is not None:
        if "error" in counts:
            text = f"unavailable ({counts['error']})"
        else:
            text = ", ".join(f"{name} {value}" for name, value in counts.items())
        grid.add_row("Counts", Text(text))
    return grid


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def status(state: CliState, as_json: bool) -> None:
    """Show the server, its migration state and row counts."""
    report = database_status(state.settings().database)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        console().print(_render_status(report))


# -- serve / stop -------------------------------------------------------------------------


def _wait_for_stop(server: EmbeddedServer) -> str:
    """Block until SIGINT, SIGTERM or SIGHUP, or until the server stops; say which."""
    with stop_signals() as stop:
        while not stop.event.wait(_WATCH_SECONDS):
            if not server.is_running():
                return "the server stopped"
        return stop.received[0]


@db.command()
@click.option(
    "--listen",
    default="*",
    show_default=True,
    metavar="ADDR",
    help="Addresses to listen on (PostgreSQL listen_addresses; '*' for all).",
)
@click.option(
    "--port", default=5432, show_default=True, type=click.IntRange(1, 65535), help="TCP port."
)
@password_file_option
@pass_state
def serve(state: CliState, listen: str, port: int, password_file: Path | None) -> None:
    """Expose the embedded server on TCP until Ctrl-C.

    TCP connections need a password (SCRAM); the Unix socket stays private.
    The password of role postgres comes from --password-file, or $SCITQ_DB_PASSWORD, or
    is asked for. Agents should rather log in with their own role (`db create-role`).
    """
    server = _embedded_server(state.settings().database, "serve")
    password = serve_password(password_file)
    out = console()
    try:
        uri = server.serve(listen, port, password)
        out.print(Text(f"serving the embedded database on TCP {listen} port {port}"))
        out.print(Text(f"connect with: {uri} (the password given)"), soft_wrap=True)
        out.print(Text("agent roles: scitq db create-role --agent WORKER_NAME"), soft_wrap=True)
        out.print(Text("press Ctrl-C to stop serving (the server stays up on its socket)"))
        out.file.flush()
        reason = _wait_for_stop(server)
    finally:
        server.stop_serving()  # also undoes a half-done serve(): back to socket only
    out.print(Text(f"stopped serving on TCP ({reason})"))


@db.command()
@pass_state
def stop(state: CliState) -> None:
    """Stop the embedded server."""
    server = _embedded_server(state.settings().database, "stop")
    if server.stop():
        console().print(Text(f"stopped the embedded server in {server.data_dir}"))
    else:
        console().print(Text(f"the embedded server in {server.data_dir} was not running"))


# -- create-role --------------------------------------------------------------------------


def create_member_role(conn: psycopg.Connection[Any], role: str, group: str, password: str) -> None:
    """Create login ``role``, member of ``group``, with a SCRAM verifier made here."""
    check_role_name(role)
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    statement = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
        sql.Identifier(role), sql.Literal(verifier.decode()), sql.Identifier(group)
    )
    try:
        conn.execute(statement)
    except psycopg.errors.DuplicateObject as exc:
        raise InvalidArgument(f"role {role!r} exists already") from exc
    except psycopg.Error as exc:
        raise translate_error(exc) from exc


@db.command("create-role")
@click.option("--agent", "worker_name", metavar="WORKER_NAME", help="A role for one worker.")
@click.option("--admin", "admin_role", metavar="NAME", help="A role member of scitq_admin.")
@click.option("--reader", "reader_role", metavar="NAME", help="A role member of scitq_reader.")
@click.option("--role", help="Role name for --agent [default: scitq_worker_<name>].")
@password_file_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def create_role(
    state: CliState,
    worker_name: str | None,
    admin_role: str | None,
    reader_role: str | None,
    role: str | None,
    password_file: Path | None,
    as_json: bool,
) -> None:
    """Create a login role for an agent, an admin or a reader.

    The password is generated (or read from --password-file) and printed once, with
    a database URL to log in with.
    """
    given = [name for name in (worker_name, admin_role, reader_role) if name is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --agent, --admin or --reader")
    if role is not None and worker_name is None:
        raise click.UsageError("--role goes with --agent (--admin and --reader name the role)")
    if worker_name is not None and not worker_name.strip():
        raise InvalidArgument("the worker name must not be empty")
    password = read_password_file(password_file) if password_file else secrets.token_urlsafe(24)
    database = state.settings().database
    result: dict[str, Any] = {}
    with connect(conninfo_for(database), application_name=database.application_name) as conn:
        if worker_name is not None:
            kind = "agent"
            role = role if role is not None else default_agent_role(worker_name)
            worker = worker_create_role(
                conn, worker_name, role, password_verifier(conn, role, password)
            )
            result["worker"] = {"id": worker["id"], "name": worker["name"]}
        else:
            kind = "admin" if admin_role is not None else "reader"
            role = admin_role or reader_role
            assert role is not None
            create_member_role(conn, role, GROUP_ROLES[kind], password)
        embedded = EmbeddedServer(database.data_dir) if database.is_embedded else None
        url = _role_url(conn, role, password, embedded)
    result.update(role=role, member_of=GROUP_ROLES[kind], password=password, database_url=url)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    out = console()
    what = f" for worker {worker_name!r} (id {result['worker']['id']})" if worker_name else ""
    out.print(Text(f"created role {role} (member of {GROUP_ROLES[kind]}){what}"), soft_wrap=True)
    out.print(Text(f"password (shown only now): {password}"), soft_wrap=True)
    out.print(Text("log in with:"))
    out.print(Text(f"  SCITQ_DATABASE_URL={shlex.quote(url)}"), soft_wrap=True)
    if embedded is not None and not embedded.status().tcp_listen:
        out.print(Text("(other machines reach the embedded server after `scitq db serve`)"))
