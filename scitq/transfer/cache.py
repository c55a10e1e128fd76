"""The resource cache: each resource URI downloaded once per machine, then linked.

Layout of the cache directory::

    index.json          [scope] URI -> {"key", "bytes", "disk_bytes", "fetched_at"},
                        rewritten atomically
    index.lock          serialises index updates (fcntl.flock)
    locks/<key>.lock    one per URI: the process holding it downloads, others wait
    items/<key>/        the resource, actions applied, files read-only

The key is a hash of the exact URI text (actions included, as in v1), so
``s3://b/ref.tgz`` and ``s3://b/ref.tgz|untar`` are two resources, and, for ``s3://``,
of the endpoint (and profile) it is read from (`cache_scope`): two setups using the same
URI on two S3 stores never serve each other's files from one cache. ``flock`` locks are
held per open file, so they serialise threads of one process as well as processes;
the index survives restarts, and an item whose directory vanished is fetched again.

Eviction (`ResourceCache.evict`, the agent's disk policy): an item's directory mtime is
its last use (touched by every `get`), and the least recently used items go first. An
item is removed under its lock, never while it is being fetched or linked; tasks that
linked it keep their hard links (the space is freed when their work dirs go).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scitq.config import TransferSettings
from scitq.errors import TransferError
from scitq.transfer.disk import atomic_path, walk_files
from scitq.transfer.registry import Progress
from scitq.transfer.retry import StopFlag
from scitq.transfer.staging import as_uri, fetch_with_retries
from scitq.transfer.uri import Uri

log = logging.getLogger(__name__)

_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


@contextlib.contextmanager
def _flock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path``; without ``wait``, yields False if it is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tree_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path, _relative in walk_files(root))


def cache_scope(uri: Uri, settings: TransferSettings) -> str:
    """What besides its text tells where a URI's bytes come from ("" when nothing does):
    for ``s3://``, the endpoint and profile of the settings."""
    if uri.scheme != "s3":
        return ""
    s3 = settings.s3
    return f"s3 endpoint={s3.endpoint_url or 'default'} profile={s3.profile or 'default'}"


def cache_key(uri: str, scope: str = "") -> str:
    """The directory name of a URI (read from ``scope``) in the cache."""
    return hashlib.sha256((f"{scope}\n{uri}" if scope else uri).encode()).hexdigest()[:32]


def index_name(uri: str, scope: str = "") -> str:
    """The entry of a URI (read from ``scope``) in ``index.json``: the URI, after its scope."""
    return f"[{scope}] {uri}" if scope else uri


class ResourceCache:
    """Resources downloaded once per cache directory and linked read-only into tasks.

    Args:
        settings: transfer settings; ``settings.cache_dir`` is the cache directory.
    """

    def __init__(self, settings: TransferSettings) -> None:
        self.settings = settings
        self.root = settings.cache_dir

    # -- index ---------------------------------------------------------------------

    def _read_index(self) -> dict[str, Any]:
        try:
            with (self.root / "index.json").open() as stream:
                index: dict[str, Any] = json.load(stream)
                return index
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("resource index unreadable, starting over", extra={"error": str(exc)})
            return {}

    def _update_index(self, uri: str, entry: dict[str, Any] | None) -> None:
        with _flock(self.root / "index.lock"):
            index = self._read_index()
            if entry is None:
                index.pop(uri, None)
            else:
                index[uri] = entry
            with atomic_path(self.root / "index.json") as temporary:
                temporary.write_text(json.dumps(index, indent=1, sort_keys=True))

    def entries(self) -> dict[str, dict[str, Any]]:
        """The cached URIs (``[scope] URI`` for s3: `index_name`) and their index entries
        (key, bytes, fetched_at)."""
        return self._read_index()

    # -- items ---------------------------------------------------------------------

    def _item_dir(self, key: str) -> Path:
        return self.root / "items" / key

    def get(
        self,
        uri: Uri | str,
        *,
        progress: Progress | None = None,
        cancel: StopFlag | None = None,
    ) -> tuple[Path, int]:
        """The local directory holding ``uri``, downloading it first if needed.

        Concurrent callers (threads or processes) for the same URI wait while one of
        them downloads; then all get the same directory.

        Returns:
            (directory, bytes downloaded by this call: 0 when it was cached).

        Raises:
            TransferError: the download failed (after retries); nothing is cached and the
                next call tries again.
        """
        parsed = as_uri(uri)
        key = cache_key(parsed.text, cache_scope(parsed, self.settings))
        with _flock(self.root / "locks" / f"{key}.lock"):
            return self._get_locked(parsed, progress, cancel)

    def _get_locked(
        self, parsed: Uri, progress: Progress | None, cancel: StopFlag | None
    ) -> tuple[Path, int]:
        scope = cache_scope(parsed, self.settings)
        key, name = cache_key(parsed.text, scope), index_name(parsed.text, scope)
        item = self._item_dir(key)
        # the caller holds the item's lock
        entry = self._read_index().get(name)
        if entry is not None and item.is_dir():
            with contextlib.suppress(OSError):
                os.utime(item)  # its last use, for eviction
            return item, 0
        shutil.rmtree(item, ignore_errors=True)  # a half-removed or unindexed item
        building = item.with_name(f".{key}.building")
        if building.exists():
            self._make_writable(building)
            shutil.rmtree(building)  # left by a killed process
        try:
            size = fetch_with_retries(
                parsed, building, self.settings, progress=progress, stop=cancel
            )
            self._make_read_only(building)
            os.replace(building, item)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        entry = {"key": key, "bytes": size, "disk_bytes": _tree_bytes(item),
                 "fetched_at": time.time()}  # fmt: skip
        self._update_index(name, entry)
        log.info("resource cached", extra={"uri": parsed.text, "bytes": size})
        return item, size

    @staticmethod
    def _make_read_only(root: Path) -> None:
        for path, _relative in walk_files(root):
            os.chmod(path, stat.S_IMODE(path.stat().st_mode) & ~0o222 | _READ_ONLY)

    @staticmethod
    def _make_writable(root: Path) -> None:
        for directory, _subdirs, files in os.walk(root):
            for name in files:
                with contextlib.suppress(OSError):
                    os.chmod(Path(directory, name), 0o644)

    def forget(self, uri: Uri | str) -> None:
        """Drop ``uri`` from the cache (the next `get` downloads it again)."""
        parsed = as_uri(uri)
        scope = cache_scope(parsed, self.settings)
        key = cache_key(parsed.text, scope)
        with _flock(self.root / "locks" / f"{key}.lock"):
            self._update_index(index_name(parsed.text, scope), None)
            item = self._item_dir(key)
            if item.exists():
                self._make_writable(item)
                shutil.rmtree(item)

    def link_into(
        self,
        uri: Uri | str,
        task_resource_dir: Path,
        *,
        progress: Progress | None = None,
        cancel: StopFlag | None = None,
    ) -> int:
        """Make ``uri``'s files appear, read-only, in ``task_resource_dir``.

        Files are hard links to the cached copy (read-only copies when the task
        directory is on another filesystem). A file of the same name already there is
        replaced (the later resource wins, as in v1).

        Returns:
            The bytes downloaded for this call (0 when the resource was cached).

        Raises:
            TransferError: the download failed.
        """
        parsed = as_uri(uri)
        key = cache_key(parsed.text, cache_scope(parsed, self.settings))
        # linked under the item's lock: eviction cannot remove it half-way
        with _flock(self.root / "locks" / f"{key}.lock"):
            item, downloaded = self._get_locked(parsed, progress, cancel)
            self._link_files(parsed, item, task_resource_dir)
        return downloaded

    @staticmethod
    def _link_files(parsed: Uri, item: Path, task_resource_dir: Path) -> None:
        try:
            for path, relative in walk_files(item):
                target = task_resource_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists() or target.is_symlink():
                    if os.path.samefile(path, target):
                        continue
                    target.unlink()
                try:
                    os.link(path, target)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
                    shutil.copyfile(path, target)
                    os.chmod(target, _READ_ONLY)
        except OSError as exc:
            raise TransferError(parsed.text, f"cannot link the cached resource: {exc}") from exc

    # -- eviction ------------------------------------------------------------------

    def usage(self) -> list[tuple[str, int, float]]:
        """The cached items as (index entry, bytes on disk, last use), oldest use first."""
        found = []
        for name, entry in self._read_index().items():
            item = self._item_dir(str(entry.get("key")))
            try:
                last_use = item.stat().st_mtime
            except OSError:
                continue  # vanished: fetched again on next use
            size = entry.get("disk_bytes")
            found.append((name, int(size) if size is not None else _tree_bytes(item), last_use))
        return sorted(found, key=lambda found_item: found_item[2])

    def evict(self, max_bytes: int) -> int:
        """Remove least recently used items until the cache holds at most ``max_bytes``;
        items in use (locked) are skipped. Returns the bytes removed."""
        items = self.usage()
        total = sum(size for _name, size, _used in items)
        removed = 0
        for name, size, _used in items:
            if total - removed <= max_bytes:
                break
            key = str(self._read_index().get(name, {}).get("key", ""))
            if not key:
                continue
            with _flock(self.root / "locks" / f"{key}.lock", wait=False) as locked:
                if not locked:
                    continue  # being fetched or linked: in use, not least recently
                self._update_index(name, None)
                item = self._item_dir(key)
                if item.exists():
                    self._make_writable(item)
                    shutil.rmtree(item, ignore_errors=True)
            removed += size
            log.info("resource evicted", extra={"resource": name, "bytes": size})
        return removed

    def size(self) -> int:
        """Bytes the cached items hold on disk."""
        return sum(size for _name, size, _used in self.usage())
