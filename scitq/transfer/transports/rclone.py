"""Any rclone remote as a scheme: ``<remote>://<path>`` is ``<remote>:<path>`` of rclone.

scitq v1 accepted every rclone remote as a URI scheme; so does this transport, through
Debian's ``rclone`` program and rclone's own configuration file (``[transfer.rclone]
config``; rclone's default without it). A scheme that is no built-in one and names a
remote of that file is served here (`scitq.transfer.registry.scheme_info`), so
``mydrive://project/reads/`` lists, downloads and uploads like ``s3://`` does:

* list: ``rclone lsjson`` (``--recursive`` for recursive listings; the MD5 when the
  remote has it cheaply);
* download: ``rclone copyto`` of a file to a temporary name renamed when complete, or
  ``rclone copy`` of a folder into a temporary folder whose files are then renamed into
  place (nothing partial ever looks complete);
* upload: ``rclone copyto`` of a file, ``rclone copy`` of a folder (files already there
  and not in the folder are kept: an output is never a ``sync`` that deletes).

rclone's exit codes say whether trying again can help (3 and 4: not found, 1 and 7:
usage or fatal errors, are final). The configuration and its secrets stay in rclone's
file: they are never on a command line, in a URI, a task row or a log line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from scitq.config import TransferSettings
from scitq.errors import TransferError
from scitq.transfer.disk import atomic_path, safe_join, walk_files
from scitq.transfer.registry import Progress, RemoteEntry, rclone_config_options
from scitq.transfer.uri import Uri

#: rclone exit codes after which trying again cannot help.
_FINAL_CODES = {1: "usage error", 3: "directory not found", 4: "file not found", 7: "fatal error"}


def _reason(stderr: str) -> str:
    """rclone's last error line, without its time stamp and level."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return "no message"
    last = lines[-1]
    for marker in ("ERROR : ", "CRITICAL: ", "Failed to "):
        if marker in last:
            last = last[last.index(marker) :].removeprefix("ERROR : ").removeprefix("CRITICAL: ")
            break
    return " ".join(last.split())[:500]


class RcloneTransport:
    """The schemes named after rclone remotes."""

    def __init__(self, settings: TransferSettings) -> None:
        self.settings = settings

    def _target(self, uri: Uri) -> str:
        return f"{uri.scheme}:{uri.rest}"

    def _run(
        self, uri: Uri, args: list[str], direction: str, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        rclone = self.settings.rclone
        if shutil.which(rclone.command) is None:
            raise TransferError(
                uri.text, f"{rclone.command} is not installed (apt-get install rclone)",
                direction=direction, retryable=False,
            )  # fmt: skip
        # rclone's S3 backend fails on AWS_CA_BUNDLE ("unsupported transport", rclone
        # 1.60 as Debian 12 ships it): the bundle is given as rclone's own --ca-cert
        env = dict(os.environ)
        bundle = env.pop("AWS_CA_BUNDLE", None)
        command = [
            rclone.command, *rclone_config_options(rclone.config),
            *(["--ca-cert", bundle] if bundle else []),
            "--contimeout", f"{self.settings.connect_timeout_seconds:g}s",
            "--timeout", f"{self.settings.read_timeout_seconds:g}s",
            "--retries", "1", "--low-level-retries", "3", *args,
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout,
                stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise TransferError(uri.text, "rclone timed out", direction=direction) from exc
        if done.returncode != 0:
            final = _FINAL_CODES.get(done.returncode)
            what = f"rclone: {_reason(done.stderr)}" + (f" ({final})" if final else "")
            raise TransferError(uri.text, what, direction=direction, retryable=final is None)
        return done

    def _timeout(self, size: int = 0) -> float:
        return self.settings.timeout_base_seconds + size / self.settings.timeout_min_rate_bytes

    def _lsjson(self, uri: Uri, recursive: bool) -> list[dict[str, Any]]:
        args = ["lsjson", "--hash", "--hash-type", "MD5"]
        if recursive:
            args += ["--recursive", "--files-only"]
        done = self._run(uri, [*args, self._target(uri)], "download", self._timeout())
        try:
            entries = json.loads(done.stdout or "[]")
        except ValueError as exc:
            raise TransferError(uri.text, "rclone lsjson printed no JSON") from exc
        return entries if isinstance(entries, list) else []

    def list(self, uri: Uri, recursive: bool = False) -> Iterator[RemoteEntry]:
        entries = self._lsjson(uri, recursive)
        if not uri.is_folder:
            entries = [e for e in entries if not e.get("IsDir")]
            if not entries:
                raise TransferError(uri.text, "no such file", retryable=False)
        for entry in entries:
            yield _entry(entry, uri)

    def download(self, uri: Uri, dest_dir: Path, progress: Progress | None = None) -> int:
        dest_dir.mkdir(parents=True, exist_ok=True)
        if not uri.is_folder:
            (entry,) = list(self.list(uri))
            with atomic_path(dest_dir / uri.name) as temporary:
                self._run(uri, ["copyto", self._target(uri), str(temporary)], "download",
                          self._timeout(entry.size))  # fmt: skip
                size = temporary.stat().st_size
            if progress is not None:
                progress(size)
            return size
        # a folder: into a hidden folder of dest_dir, then each file renamed into place
        staging = dest_dir / f".rclone-{uuid.uuid4().hex[:12]}"
        try:
            expected = sum(e.size for e in self.list(uri, recursive=True))
            self._run(uri, ["copy", self._target(uri), str(staging)], "download",
                      self._timeout(expected))  # fmt: skip
            total = 0
            for file, relative in sorted(walk_files(staging)) if staging.is_dir() else []:
                target = safe_join(dest_dir, relative, uri.text)
                target.parent.mkdir(parents=True, exist_ok=True)
                size = file.stat().st_size
                file.replace(target)
                total += size
                if progress is not None:
                    progress(size)
            return total
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def upload(self, src: Path, uri: Uri, progress: Progress | None = None) -> int:
        if src.is_dir():
            size = sum(file.stat().st_size for file, _ in walk_files(src))
            self._run(uri, ["copy", str(src), self._target(uri)], "upload", self._timeout(size))
        else:
            size = src.stat().st_size
            target = self._target(uri.child(src.name) if uri.is_folder else uri)
            self._run(uri, ["copyto", str(src), target], "upload", self._timeout(size))
        if progress is not None:
            progress(size)
        return size


def _entry(entry: dict[str, Any], uri: Uri) -> RemoteEntry:
    mtime = None
    modified = entry.get("ModTime")
    if isinstance(modified, str):
        try:
            mtime = datetime.fromisoformat(modified.replace("Z", "+00:00")).timestamp()
        except ValueError:
            mtime = None
    md5 = (entry.get("Hashes") or {}).get("md5") or None
    path = str(entry.get("Path") or entry.get("Name") or "")
    if not uri.is_folder:
        path = uri.name
    return RemoteEntry(
        path=path, size=max(int(entry.get("Size") or 0), 0), md5=md5, mtime=mtime,
        is_dir=bool(entry.get("IsDir")),
    )  # fmt: skip
