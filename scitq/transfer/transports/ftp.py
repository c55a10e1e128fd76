"""``ftp://host[:port]/path`` through ftputil.

Credentials, in order: the `FtpSettings` user and password (for any host), the
``.netrc`` entry for the host (``ftp://alice@host/...`` picks alice's entry), then
anonymous login. A password written in the URI is refused by `parse_uri`: URIs are
stored in task rows and shown in logs.

Uploads are written under a temporary name and renamed, so a reader never sees a
partial file under the final name. One FTP connection per call (ftputil hosts are not
thread-safe); calls may run in parallel.
"""

from __future__ import annotations

import contextlib
import ftplib
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ftputil
import ftputil.error

from scitq.config import TransferSettings, netrc_login
from scitq.errors import ConfigError, TransferError
from scitq.transfer.disk import PARTIAL_MARK, atomic_path, safe_join, walk_files
from scitq.transfer.registry import Progress, RemoteEntry
from scitq.transfer.uri import Uri


def _session_factory(port: int, timeout: float) -> type[ftplib.FTP]:
    class Session(ftplib.FTP):
        def __init__(self, host: str, user: str, password: str) -> None:
            super().__init__(timeout=timeout)
            self.connect(host, port)
            self.login(user, password)
            self.set_pasv(True)

    return Session


def translate(exc: Exception, uri: Uri, direction: str) -> TransferError:
    """A `TransferError` for an ftputil/ftplib/socket exception."""
    if isinstance(exc, TransferError):
        return exc
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "530" in text:
        return TransferError(
            uri.text, f"FTP login refused ({text})", direction=direction, retryable=False
        )
    code = text.split(" ", 1)[0]
    permanent = len(code) == 3 and code.isdigit() and code.startswith("5")
    if permanent or isinstance(exc, ftputil.error.PermanentError | ftplib.error_perm):
        return TransferError(uri.text, f"FTP error: {text}", direction=direction, retryable=False)
    if isinstance(exc, ConfigError):
        return TransferError(uri.text, str(exc), direction=direction, retryable=False)
    return TransferError(uri.text, f"FTP error: {text}", direction=direction)


class FtpTransport:
    """The ``ftp`` scheme."""

    def __init__(self, settings: TransferSettings) -> None:
        self.settings = settings

    def _credentials(self, host: str, user: str | None) -> tuple[str, str]:
        ftp = self.settings.ftp
        if ftp.user is not None and user in (None, ftp.user):
            return ftp.user, ftp.password or ""
        found = netrc_login(ftp.netrc, host, user)
        if found is not None:
            return found
        if user is not None:
            raise ConfigError(f"no password for FTP user {user} on {host} (add it to .netrc)")
        return "anonymous", "anonymous@"

    @contextlib.contextmanager
    def _connect(self, uri: Uri) -> Iterator[Any]:
        user, _, hostport = uri.authority.rpartition("@")
        host, _, port_text = hostport.partition(":")
        login, password = self._credentials(host, user or None)
        factory = _session_factory(int(port_text or 21), self.settings.connect_timeout_seconds)
        with ftputil.FTPHost(host, login, password, session_factory=factory) as ftp_host:
            # servers are assumed to report UTC; mtimes only steer `scitq fetch sync`
            ftp_host.set_time_shift(0.0)
            yield ftp_host

    @staticmethod
    def _path(uri: Uri) -> str:
        return uri.path or "/"

    def list(self, uri: Uri, recursive: bool = False) -> Iterator[RemoteEntry]:
        try:
            with self._connect(uri) as host:
                entries = list(self._list(host, uri, recursive))
        except TransferError as exc:
            raise TransferError(
                exc.uri, exc.reason, direction="list", retryable=exc.retryable
            ) from exc
        except Exception as exc:
            raise translate(exc, uri, "list") from exc
        yield from entries

    def _list(self, host: Any, uri: Uri, recursive: bool) -> Iterator[RemoteEntry]:
        path = self._path(uri)
        if not uri.is_folder:
            stat = host.stat(path)
            yield RemoteEntry(uri.name, int(stat.st_size), None, float(stat.st_mtime))
            return
        if not host.path.isdir(path):
            raise TransferError(uri.text, "no such directory", retryable=False)
        if not recursive:
            for name in sorted(host.listdir(path)):
                stat = host.stat(posixpath.join(path, name))
                is_dir = host.path.isdir(posixpath.join(path, name))
                size = 0 if is_dir else int(stat.st_size)
                yield RemoteEntry(name, size, None, float(stat.st_mtime), is_dir=is_dir)
            return
        for directory, subdirs, files in host.walk(path):
            subdirs.sort()
            for name in sorted(files):
                full = posixpath.join(directory, name)
                stat = host.stat(full)
                relative = posixpath.relpath(full, path)
                yield RemoteEntry(relative, int(stat.st_size), None, float(stat.st_mtime))

    def download(self, uri: Uri, dest_dir: Path, progress: Progress | None = None) -> int:
        try:
            with self._connect(uri) as host:
                if not uri.is_folder:
                    return self._get(host, self._path(uri), dest_dir / uri.name, progress)
                entries = list(self._list(host, uri, recursive=True))
                dest_dir.mkdir(parents=True, exist_ok=True)
                return sum(
                    self._get(
                        host,
                        posixpath.join(self._path(uri), entry.path),
                        safe_join(dest_dir, entry.path, uri.text),
                        progress,
                    )
                    for entry in entries
                )
        except Exception as exc:
            raise translate(exc, uri, "download") from exc

    @staticmethod
    def _get(host: Any, path: str, target: Path, progress: Progress | None) -> int:
        callback = None if progress is None else (lambda chunk: progress(len(chunk)))
        with atomic_path(target) as temporary:
            host.download(path, str(temporary), callback=callback)
            return temporary.stat().st_size

    def upload(self, src: Path, uri: Uri, progress: Progress | None = None) -> int:
        try:
            with self._connect(uri) as host:
                path = self._path(uri)
                if src.is_dir():
                    return sum(
                        self._put(host, file, posixpath.join(path, relative), progress)
                        for file, relative in walk_files(src)
                    )
                if uri.is_folder:
                    path = posixpath.join(path, src.name)
                return self._put(host, src, path, progress)
        except Exception as exc:
            raise translate(exc, uri, "upload") from exc

    def delete(self, uri: Uri) -> tuple[str, ...]:
        """Delete the file ``uri``, or every file below the folder ``uri``."""
        try:
            with self._connect(uri) as host:
                if not uri.is_folder:
                    host.remove(self._path(uri))
                    return (uri.name,)
                entries = tuple(e.path for e in self._list(host, uri, recursive=True))
                for relative in entries:
                    host.remove(posixpath.join(self._path(uri), relative))
                return entries
        except Exception as exc:
            raise translate(exc, uri, "delete") from exc

    @staticmethod
    def _put(host: Any, src: Path, path: str, progress: Progress | None) -> int:
        directory, name = posixpath.split(path)
        if directory:
            host.makedirs(directory, exist_ok=True)
        temporary = posixpath.join(directory, f".{name}{PARTIAL_MARK}upload")
        callback = None if progress is None else (lambda chunk: progress(len(chunk)))
        try:
            host.upload(str(src), temporary, callback=callback)
            host.rename(temporary, path)
        except BaseException:
            with contextlib.suppress(Exception):
                host.remove(temporary)
            raise
        return src.stat().st_size
