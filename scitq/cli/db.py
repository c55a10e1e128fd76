"""``scitq db``: upgrade, inspect, expose and stop the database; create login roles."""

from __future__ import annotations

import json
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

from scitq.cli import CliState, as_scitq_error, console, mask_conninfo, pass_state
from scitq.cli.db_prune import prune
from scitq.cli.db_serve import (
    PASSWORD_VARIABLE as PASSWORD_VARIABLE,
)
from scitq.cli.db_serve import (
    password_file_option,
    read_password_file,
    serve,
    stop,
)
from scitq.cli.db_serve import serve_password as serve_password
from scitq.config import DatabaseSettings
from scitq.db import migrate
from scitq.db.connection import connect, translate_error
from scitq.db.report import schema_counts
from scitq.db.worker import password_verifier, worker_create_role, worker_role_set_batches
from scitq.embedded import conninfo_for
from scitq.embedded.server import EmbeddedServer
from scitq.embedded.serving import current_endpoint
from scitq.errors import DatabaseError, InvalidArgument, PermissionDenied

#: Login role names accepted (the rule of scitq.worker_create_role_v1).
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,62}$")
#: Group roles that `create-role --admin` / `--reader` / `--agent` make members of.
GROUP_ROLES = {"admin": "scitq_admin", "reader": "scitq_reader", "agent": "scitq_agent"}


@click.group()
def db() -> None:
    """Manage the database: upgrade, status, serve, stop, create-role, prune."""


db.add_command(serve)
db.add_command(stop)
db.add_command(prune)


# -- helpers ------------------------------------------------------------------------------


def default_agent_role(worker_name: str) -> str:
    """``scitq_worker_<name>``, lower-cased, other characters replaced by ``_``."""
    return ("scitq_worker_" + re.sub(r"[^a-z0-9_.-]", "_", worker_name.lower()))[:63]


def check_role_name(role: str) -> None:
    if not ROLE_NAME.match(role):
        raise InvalidArgument(
            f"invalid role name {role!r}: use lower-case letters, digits, '_', '.' or '-', "
            "starting with a letter or '_', at most 63 characters"
        )


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

    For the embedded server: its TLS address when `db serve` runs (``sslmode=verify-full``
    with the CA), else this host.
    """
    host, port, query = _public_host(conn.info.host), conn.info.port, ""
    if embedded is not None and (endpoint := current_endpoint(embedded.data_dir)):
        host, port, query = endpoint.host, endpoint.port, endpoint.tls_query()
    return (
        f"postgresql://{quote(role, safe='')}:{quote(password, safe='')}@"
        f"{host}:{port}/{quote(conn.info.dbname, safe='')}{query}"
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
@click.option("--batch", "batches", multiple=True, metavar="BATCH",
              help="With --agent: the only batches the role may ever serve (repeatable; "
              "default: any).")  # fmt: skip
@password_file_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
def create_role(
    state: CliState,
    worker_name: str | None,
    admin_role: str | None,
    reader_role: str | None,
    role: str | None,
    batches: tuple[str, ...],
    password_file: Path | None,
    as_json: bool,
) -> None:
    """Create a login role for an agent, an admin or a reader.

    The password is generated (or read from --password-file) and printed once, with
    a database URL to log in with. An agent role is bound to its worker: it registers
    that worker only, and serves only the --batch given (any batch without).
    """
    if batches and worker_name is None:
        raise click.UsageError("--batch goes with --agent")
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
                conn,
                worker_name,
                role,
                password_verifier(conn, role, password),
                batches=list(batches) or None,
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
    if embedded is not None and (endpoint := current_endpoint(embedded.data_dir)) is None:
        out.print(Text("(other machines reach the embedded server after `scitq db serve`)"))
    elif embedded is not None and endpoint is not None and endpoint.ca is not None:
        out.print(Text(f"with the CA {endpoint.ca} copied to the same path on the agent's "
                       "machine (sslrootcert)"), soft_wrap=True)  # fmt: skip


@db.command("role-batches")
@click.argument("role")
@click.option("--batch", "batches", multiple=True, metavar="BATCH",
              help="A batch the role may serve (repeatable); none: any batch.")  # fmt: skip
@pass_state
def role_batches(state: CliState, role: str, batches: tuple[str, ...]) -> None:
    """Fix the batches an agent role (`create-role --agent`) may ever serve.

    Claims outside them are refused by the database from the next claim on.
    """
    database = state.settings().database
    with connect(conninfo_for(database), application_name=database.application_name) as conn:
        row = worker_role_set_batches(conn, role, list(batches) or None)
    allowed = ", ".join(row["batches"]) if row["batches"] is not None else "any batch"
    console().print(Text(f"role {role} (worker {row['worker_name']}) may serve: {allowed}"))
