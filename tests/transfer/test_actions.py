"""Actions (gunzip, untar, unzip, mv) and atomic staging, through file:// URIs."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from scitq.config import TransferSettings
from scitq.errors import TransferError
from scitq.transfer import fetch, stage_inputs


def _tar(path: Path, members: dict[str, bytes], *, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if "scitq" in p.name]


def test_gunzip_untar_unzip_and_mv(tmp_path: Path, transfer_settings: TransferSettings) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "reads.fq.gz").write_bytes(gzip.compress(b"@r1\nACGT\n"))
    _tar(src / "db.tgz", {"db/a.txt": b"A", "db/sub/b.txt": b"BB"})
    with zipfile.ZipFile(src / "idx.zip", "w") as archive:
        archive.writestr("idx/one", "1")
    dest = tmp_path / "input"
    stage_inputs(
        [
            f"file://{src}/reads.fq.gz|gunzip",
            f"file://{src}/db.tgz|untar|mv:ref",
            f"file://{src}/idx.zip|unzip",
        ],
        dest,
        transfer_settings,
    )
    assert (dest / "reads.fq").read_bytes() == b"@r1\nACGT\n"
    assert (dest / "ref" / "db" / "sub" / "b.txt").read_bytes() == b"BB"
    assert (dest / "idx" / "one").read_text() == "1"
    assert sorted(p.name for p in dest.iterdir()) == ["idx", "reads.fq", "ref"]
    assert (src / "db.tgz").exists()  # the source is untouched


def test_gunzip_of_a_plain_file_is_a_clear_error(
    tmp_path: Path, transfer_settings: TransferSettings
) -> None:
    (tmp_path / "plain.txt").write_text("not compressed")
    dest = tmp_path / "input"
    with pytest.raises(TransferError, match=r"gunzip: plain\.txt is not a gzip file") as caught:
        stage_inputs([f"file://{tmp_path}/plain.txt|gunzip"], dest, transfer_settings)
    assert not caught.value.retryable
    assert list(dest.iterdir()) == []


def test_corrupted_archives(tmp_path: Path, transfer_settings: TransferSettings) -> None:
    good = gzip.compress(b"x" * 100000)
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "bad.tgz").write_bytes(b"\x1f\x8b" + os.urandom(500))
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04" + os.urandom(200))
    dest = tmp_path / "input"
    for name, action, fragment in (
        ("cut.gz", "gunzip", "is corrupt"),
        ("bad.tgz", "untar", "not a valid tar archive"),
        ("bad.zip", "unzip", "not a valid zip archive"),
    ):
        with pytest.raises(TransferError, match=fragment):
            fetch(f"file://{tmp_path}/{name}|{action}", dest, transfer_settings)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("member", ["../escape.txt", "/abs/escape.txt", "a/../../escape.txt"])
def test_tar_path_traversal_is_refused(
    tmp_path: Path, transfer_settings: TransferSettings, member: str
) -> None:
    _tar(tmp_path / "evil.tar", {"ok.txt": b"fine", member: b"evil"}, mode="w")
    dest = tmp_path / "deep" / "input"
    with pytest.raises(TransferError, match="tries to write outside"):
        fetch(f"file://{tmp_path}/evil.tar|untar", dest, transfer_settings)
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "deep" / "escape.txt").exists()
    assert list(dest.iterdir()) == []


def test_tar_symlink_escaping_is_refused(
    tmp_path: Path, transfer_settings: TransferSettings
) -> None:
    with tarfile.open(tmp_path / "link.tar", "w") as archive:
        info = tarfile.TarInfo("sneaky")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    with pytest.raises(TransferError, match="tries to write outside"):
        fetch(f"file://{tmp_path}/link.tar|untar", tmp_path / "input", transfer_settings)


@pytest.mark.parametrize("member", ["../escape.txt", "/abs.txt", "a/../../escape.txt"])
def test_zip_path_traversal_is_refused(
    tmp_path: Path, transfer_settings: TransferSettings, member: str
) -> None:
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("ok.txt", "fine")
        archive.writestr(zipfile.ZipInfo(member), "evil")
    dest = tmp_path / "input"
    with pytest.raises(TransferError, match="tries to write outside"):
        fetch(f"file://{tmp_path}/evil.zip|unzip", dest, transfer_settings)
    assert not (tmp_path / "escape.txt").exists()
    assert list(dest.iterdir()) == []


def test_failed_item_stops_and_leaves_nothing_partial(
    tmp_path: Path, transfer_settings: TransferSettings
) -> None:
    (tmp_path / "a.txt").write_text("a")
    dest = tmp_path / "input"
    with pytest.raises(TransferError) as caught:
        stage_inputs([f"file://{tmp_path}/a.txt", f"file://{tmp_path}/missing.txt"], dest,
                     transfer_settings)  # fmt: skip
    assert caught.value.uri == f"file://{tmp_path}/missing.txt"
    assert caught.value.reason == "no such file"
    assert _leftovers(dest) == []
