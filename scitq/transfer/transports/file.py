"""``file://`` URIs: paths on the machine that runs the transfer.

``file:///data/ref.fa`` is absolute; ``file://data/ref.fa`` is relative to the current
directory (useful on the command line, meaningless in a task).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from scitq.config import TransferSettings
from scitq.errors import TransferError
from scitq.transfer.disk import atomic_path, safe_join, walk_files
from scitq.transfer.registry import Progress, RemoteEntry
from scitq.transfer.uri import Uri

_CHUNK = 1024 * 1024


def copy_stream(source: Path, target: Path, progress: Progress | None) -> int:
    """Copy one file's bytes, reporting progress; returns the bytes copied."""
    total = 0
    with source.open("rb") as reader, target.open("wb") as writer:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            total += len(chunk)
            if progress is not None:
                progress(len(chunk))
    return total


def file_md5(path: Path) -> str:
    """The hex MD5 of a local file."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class LocalTransport:
    """The ``file`` scheme."""

    def __init__(self, settings: TransferSettings) -> None:
        self.settings = settings

    @staticmethod
    def local_path(uri: Uri) -> Path:
        """The local path a ``file://`` URI names."""
        return Path(uri.rest)

    def list(self, uri: Uri, recursive: bool = False) -> Iterator[RemoteEntry]:
        path = self.local_path(uri)
        if not uri.is_folder:
            if not path.is_file():
                raise TransferError(uri.text, "no such file", direction="list", retryable=False)
            stat = path.stat()
            yield RemoteEntry(path.name, stat.st_size, None, stat.st_mtime)
            return
        if not path.is_dir():
            raise TransferError(uri.text, "no such directory", direction="list", retryable=False)
        if recursive:
            for file, relative in walk_files(path):
                stat = file.stat()
                yield RemoteEntry(relative, stat.st_size, None, stat.st_mtime)
            return
        for child in sorted(path.iterdir()):
            if child.is_dir() and not child.is_symlink():
                yield RemoteEntry(child.name, 0, None, child.stat().st_mtime, is_dir=True)
            elif child.is_file() and not child.is_symlink():
                stat = child.stat()
                yield RemoteEntry(child.name, stat.st_size, None, stat.st_mtime)

    def download(self, uri: Uri, dest_dir: Path, progress: Progress | None = None) -> int:
        source = self.local_path(uri)
        try:
            if not uri.is_folder:
                if not source.is_file():
                    raise TransferError(uri.text, "no such file", retryable=False)
                with atomic_path(dest_dir / source.name) as temporary:
                    return copy_stream(source, temporary, progress)
            if not source.is_dir():
                raise TransferError(uri.text, "no such directory", retryable=False)
            total = 0
            dest_dir.mkdir(parents=True, exist_ok=True)
            for file, relative in walk_files(source):
                with atomic_path(safe_join(dest_dir, relative, uri.text)) as temporary:
                    total += copy_stream(file, temporary, progress)
            return total
        except OSError as exc:
            raise TransferError(uri.text, _os_reason(exc)) from exc

    def upload(self, src: Path, uri: Uri, progress: Progress | None = None) -> int:
        target = self.local_path(uri)
        try:
            if src.is_dir():
                total = 0
                for file, relative in walk_files(src):
                    with atomic_path(target / relative) as temporary:
                        total += copy_stream(file, temporary, progress)
                return total
            if uri.is_folder:
                target = target / src.name
            with atomic_path(target) as temporary:
                size = copy_stream(src, temporary, progress)
            shutil.copymode(src, target)
            return size
        except OSError as exc:
            raise TransferError(uri.text, _os_reason(exc), direction="upload") from exc

    def delete(self, uri: Uri) -> tuple[str, ...]:
        """Delete the file ``uri``, or every file below the folder ``uri`` (folders are
        kept); returns the relative paths deleted."""
        path = self.local_path(uri)
        try:
            if not uri.is_folder:
                if not path.is_file():
                    raise TransferError(
                        uri.text, "no such file", direction="delete", retryable=False
                    )
                path.unlink()
                return (path.name,)
            if not path.is_dir():
                raise TransferError(
                    uri.text, "no such directory", direction="delete", retryable=False
                )
            deleted = tuple(walk_files(path))
            for file, _relative in deleted:
                file.unlink()
            return tuple(relative for _file, relative in deleted)
        except OSError as exc:
            raise TransferError(uri.text, _os_reason(exc), direction="delete") from exc


def _os_reason(exc: OSError) -> str:
    return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
