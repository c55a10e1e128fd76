"""The ``|gunzip``, ``|untar`` and ``|unzip`` actions, applied to downloaded files.

They run in a private staging directory (`scitq.transfer.staging.fetch`), so a failure
leaves nothing behind. Archives cannot write outside their target: absolute member
names, ``..``, links pointing outside and device files are refused (tar through the
standard ``data`` extraction filter, zip by checking every name).
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from scitq.errors import TransferError
from scitq.transfer.disk import atomic_path
from scitq.transfer.uri import Uri

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1024 * 1024


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def _fail(uri: Uri, reason: str) -> TransferError:
    return TransferError(uri.text, reason, retryable=False)


def gunzip(path: Path, uri: Uri) -> Path:
    """Decompress ``path`` (``x.gz`` becomes ``x``; other names are kept); returns it."""
    with path.open("rb") as stream:
        if stream.read(2) != _GZIP_MAGIC:
            raise _fail(uri, f"gunzip: {path.name} is not a gzip file")
    target = path.with_suffix("") if path.suffix in (".gz", ".gzip") else path
    try:
        with atomic_path(target) as temporary:
            with gzip.open(path, "rb") as reader, temporary.open("wb") as writer:
                shutil.copyfileobj(reader, writer, _CHUNK)
            if target != path:
                path.unlink()
    except (OSError, EOFError, zlib.error) as exc:
        raise _fail(uri, f"gunzip: {path.name} is corrupt ({exc})") from exc
    return target


def untar(path: Path, uri: Uri) -> None:
    """Extract a tar, tar.gz or tgz archive next to itself, then delete it."""
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive.getmembers():
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise tarfile.FilterError(f"member {member.name!r}")
            # 'data' also refuses links escaping the target and device files
            archive.extractall(path.parent, filter="data")
    except tarfile.FilterError as exc:
        raise _fail(uri, f"untar: {path.name} tries to write outside its folder ({exc})") from exc
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _fail(uri, f"untar: {path.name} is not a valid tar archive ({exc})") from exc
    path.unlink()


def _check_zip_member(info: zipfile.ZipInfo, path: Path, uri: Uri) -> None:
    name = PurePosixPath(info.filename.replace("\\", "/"))
    if name.is_absolute() or ".." in name.parts or ":" in info.filename:
        raise _fail(uri, f"unzip: {path.name} tries to write outside its folder ({info.filename})")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _fail(uri, f"unzip: {path.name} contains a symbolic link ({info.filename})")


def unzip(path: Path, uri: Uri) -> None:
    """Extract a zip archive next to itself (CRC checked), then delete it."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            for info in members:
                _check_zip_member(info, path, uri)
            for info in members:
                archive.extract(info, path.parent)
    except TransferError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise _fail(uri, f"unzip: {path.name} is not a valid zip archive ({exc})") from exc
    path.unlink()


def apply_actions(root: Path, uri: Uri) -> None:
    """Apply ``uri``'s gunzip/untar/unzip actions, in order, to every file below ``root``.

    ``mv:`` is not applied here: it chooses where the result goes.
    """
    for action in uri.actions:
        if action.name == "mv":
            continue
        for path in _files(root):
            if action.name == "gunzip":
                gunzip(path, uri)
            elif action.name == "untar":
                untar(path, uri)
            elif action.name == "unzip":
                unzip(path, uri)
    # extracted files keep the archive's modes; staging must be able to move them
    for directory, _subdirs, _names in os.walk(root):
        os.chmod(directory, os.stat(directory).st_mode | stat.S_IRWXU)
