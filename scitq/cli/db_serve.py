"""``scitq db serve`` and ``scitq db stop``: the embedded server exposed to other machines
over TLS (`scitq.embedded.serving`), and stopped; the password helpers they share with
``scitq db create-role``."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.text import Text

from scitq.cli import CliState, console, mask_conninfo, pass_state, stop_signals
from scitq.config import DatabaseSettings
from scitq.embedded.server import EmbeddedServer
from scitq.embedded.serving import serving
from scitq.embedded.tls import TlsFiles
from scitq.errors import InvalidArgument

#: Read by `scitq db serve` when no --password-file is given.
PASSWORD_VARIABLE = "SCITQ_DB_PASSWORD"
_WATCH_SECONDS = 2.0  # how often `db serve` checks that the server still runs
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)

password_file_option = click.option(
    "--password-file", type=_FILE, help="Read the password from this file (its first line)."
)


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


def embedded_server(database: DatabaseSettings, command: str) -> EmbeddedServer:
    if not database.is_embedded:
        assert database.url is not None
        raise InvalidArgument(
            f"`scitq db {command}` works on the embedded server only, but the database is "
            f"{mask_conninfo(database.url)}: drop --database-url and SCITQ_DATABASE_URL to "
            "use the embedded server"
        )
    return EmbeddedServer(database.data_dir)


def _wait_for_stop(server: EmbeddedServer) -> str:
    """Block until SIGINT, SIGTERM or SIGHUP, or until the server stops; say which."""
    with stop_signals() as stop:
        while not stop.event.wait(_WATCH_SECONDS):
            if not server.is_running():
                return "the server stopped"
        return stop.received[0]


def _own_certificate(cert: Path | None, key: Path | None, ca: Path | None) -> TlsFiles | None:
    if cert is None and key is None and ca is None:
        return None
    if cert is None or key is None:
        raise click.UsageError("--tls-cert and --tls-key go together (--tls-ca with them)")
    return TlsFiles(cert.resolve(), key.resolve(), ca.resolve() if ca else None)


@click.command()
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
@click.option("--tls-cert", type=_FILE, help="Your server certificate (PEM) [default: made].")
@click.option("--tls-key", type=_FILE, help="The key of --tls-cert (PEM).")
@click.option(
    "--tls-ca", type=_FILE, help="The CA agents verify --tls-cert with [default: the system's]."
)
@click.option(
    "--tls-name",
    "names",
    multiple=True,
    metavar="NAME",
    help="Another host name or address for the made certificate (repeatable).",
)
@password_file_option
@pass_state
def serve(
    state: CliState,
    listen: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    names: tuple[str, ...],
    password_file: Path | None,
) -> None:
    """Expose the embedded server on TCP, with TLS, until Ctrl-C.

    Connections need a password (SCRAM) and, from other machines, TLS: a CA and a server
    certificate for this host's names and addresses are made in the data directory (tls/),
    or give your own. Clear text is refused except from the loopback. The password of role
    postgres comes from --password-file, or $SCITQ_DB_PASSWORD, or is asked for. Agents
    should rather log in with their own role (`db create-role`).
    """
    server = embedded_server(state.settings().database, "serve")
    password = serve_password(password_file)
    own = _own_certificate(tls_cert, tls_key, tls_ca)
    out = console()
    try:
        with serving(server, listen, port, password, own=own, names=names) as endpoint:
            out.print(Text(f"serving the embedded database on TCP {listen} port {port} (TLS)"))
            out.print(Text(f"connect with: {endpoint.uri()} (the password given)"), soft_wrap=True)
            if endpoint.ca is not None:
                out.print(Text(f"agents verify the server with the CA {endpoint.ca}: copy it "
                               "to their machines"), soft_wrap=True)  # fmt: skip
            out.print(Text("agent roles: scitq db create-role --agent WORKER_NAME"), soft_wrap=True)
            out.print(Text("press Ctrl-C to stop serving (the server stays up on its socket)"))
            out.file.flush()
            reason = _wait_for_stop(server)
    finally:
        server.stop_serving()  # also undoes a half-done serve(): back to socket only
    out.print(Text(f"stopped serving on TCP ({reason})"))


@click.command()
@pass_state
def stop(state: CliState) -> None:
    """Stop the embedded server."""
    server = embedded_server(state.settings().database, "stop")
    if server.stop():
        console().print(Text(f"stopped the embedded server in {server.data_dir}"))
    else:
        console().print(Text(f"the embedded server in {server.data_dir} was not running"))
