"""Work folders of executions: ``input/``, ``output/``, ``resource/`` and ``tmp/``.

Creating four folders and removing them again costs more than running a short task, so a
folder an execution leaves exactly as it found it (the four sub-folders, empty, with
their modes) is renamed for the next execution instead of being removed; anything else
is removed whole. Recycled folders never outlive the agent: leftovers of an earlier run
are removed at start.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

SUBFOLDERS = ("input", "output", "resource", "tmp")
_MODE = 0o755
_SPARE_PREFIX = ".spare-"


class WorkFolders:
    """Hands out and takes back the per-execution work folders under ``root``."""

    def __init__(self, root: Path, keep_spares: int = 64) -> None:
        self.root = root
        self._keep_spares = keep_spares
        self._spares: list[Path] = []
        self._made = 0

    def remove_leftovers(self) -> None:
        """Remove spare folders a previous agent left behind."""
        if not self.root.is_dir():
            return
        for entry in os.scandir(self.root):
            if entry.name.startswith(_SPARE_PREFIX):
                shutil.rmtree(entry.path, ignore_errors=True)

    def create(self, name: str) -> Path:
        """A fresh work folder ``root/name`` with its four empty sub-folders.

        Raises:
            OSError: the folder cannot be made (disk full, permissions).
        """
        path = self.root / name
        if path.exists():  # left by an agent of another database with the same ids
            shutil.rmtree(path)
        while self._spares:
            spare = self._spares.pop()
            try:
                spare.rename(path)
                return path
            except OSError:
                shutil.rmtree(spare, ignore_errors=True)
        path.mkdir(parents=True)
        path.chmod(_MODE)  # whatever the umask: recycling compares modes
        for sub in SUBFOLDERS:
            (path / sub).mkdir()
            (path / sub).chmod(_MODE)
        return path

    def release(self, path: Path) -> None:
        """Take back a work folder the execution no longer needs."""
        if len(self._spares) < self._keep_spares and _untouched(path):
            self._made += 1
            spare = self.root / f"{_SPARE_PREFIX}{os.getpid()}-{self._made}"
            try:
                path.rename(spare)
            except OSError:
                pass
            else:
                self._spares.append(spare)
                return
        shutil.rmtree(path, ignore_errors=True)


def _untouched(path: Path) -> bool:
    """Whether ``path`` holds exactly the four sub-folders, empty and with their modes."""
    try:
        with os.scandir(path) as entries:
            names = []
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                if not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) != _MODE:
                    return False
                names.append(entry.name)
        if sorted(names) != sorted(SUBFOLDERS):
            return False
        for sub in SUBFOLDERS:
            with os.scandir(path / sub) as entries:
                if next(entries, None) is not None:
                    return False
    except OSError:
        return False
    return True
