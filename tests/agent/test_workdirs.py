"""Work folders: four empty sub-folders per execution, recycled only when untouched."""

from __future__ import annotations

import os

from scitq.agent.workdirs import SUBFOLDERS, WorkFolders


def test_an_untouched_folder_is_recycled_for_the_next_execution(tmp_path):
    folders = WorkFolders(tmp_path)
    first = folders.create("execution-1")
    assert sorted(p.name for p in first.iterdir()) == sorted(SUBFOLDERS)
    inode = first.stat().st_ino
    folders.release(first)
    assert not first.exists()
    second = folders.create("execution-2")
    assert second.stat().st_ino == inode  # renamed, not made again
    assert sorted(p.name for p in second.iterdir()) == sorted(SUBFOLDERS)


def test_a_folder_with_anything_left_in_it_is_removed(tmp_path):
    folders = WorkFolders(tmp_path)
    changes = [
        lambda p: (p / "output" / "result.txt").write_text("x"),
        lambda p: (p / "written-in-cwd").write_text("x"),
        lambda p: (p / "tmp" / "sub").mkdir(),
        lambda p: (p / "input").chmod(0o700),
        lambda p: os.symlink("/etc", p / "link"),
    ]
    for number, change in enumerate(changes):
        path = folders.create(f"execution-{number}")
        change(path)
        folders.release(path)
        assert not path.exists()
        assert [p.name for p in tmp_path.iterdir()] == []  # nothing kept as a spare
    fresh = folders.create("execution-9")
    assert all(not any((fresh / sub).iterdir()) for sub in SUBFOLDERS)


def test_spares_left_by_an_earlier_agent_are_removed_at_start(tmp_path):
    WorkFolders(tmp_path).release(WorkFolders(tmp_path).create("execution-1"))
    assert len(list(tmp_path.iterdir())) == 1
    later = WorkFolders(tmp_path)
    later.remove_leftovers()
    assert list(tmp_path.iterdir()) == []
