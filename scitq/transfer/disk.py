"""Local-disk helpers shared by the transports: atomic writes and safe joins."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from scitq.errors import TransferError

#: Marks files being written; never the name of a complete file.
PARTIAL_MARK = ".scitq-partial-"


def partial_name(path: Path) -> Path:
    """A hidden temporary name next to ``path`` (same directory, hence same filesystem)."""
    return path.with_name(f".{path.name}{PARTIAL_MARK}{secrets.token_hex(4)}")


def is_partial(path: Path) -> bool:
    """True for the temporary names made by `partial_name`."""
    return PARTIAL_MARK in path.name


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path; rename it to ``path`` when the block succeeds.

    On any exception the temporary file is removed, so a partial download never has
    the final name. Parent directories are created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = partial_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def safe_join(base: Path, relative: str, uri: str, *, direction: str = "download") -> Path:
    """``base / relative`` for a relative path that comes from a remote listing.

    Raises:
        TransferError: the path is absolute or climbs out of ``base`` with ``..``
            (an object key like ``a/../../etc/passwd``), not retryable.
    """
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise TransferError(
            uri, f"refusing unsafe remote path {relative!r}", direction=direction, retryable=False
        )
    return base.joinpath(*pure.parts)


def walk_files(root: Path) -> Iterator[tuple[Path, str]]:
    """The regular files below ``root`` as (path, ``/``-separated relative path), sorted.

    Symbolic links, FIFOs and other special files are skipped (as in v1 outputs).
    """
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted(files):
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file() or is_partial(path):
                continue
            yield path, path.relative_to(root).as_posix()
