"""rclone remotes as schemes (``lab://bucket/key``), through Debian's rclone against a
local S3 (a moto server process): list, download, upload and sync through the same
registry and staging code as the built-in schemes; clear errors for an unknown remote,
a missing file, a missing rclone."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scitq.config import RcloneSettings, TransferSettings
from scitq.errors import InvalidUri, TransferError
from scitq.transfer import (
    parse_uri,
    stage_inputs,
    transport_for,
    upload_outputs,
    validate_uri,
)
from scitq.transfer.commands import copy_uri, sync_folders, to_uri
from scitq.transfer.disk import PARTIAL_MARK
from tests.fixtures.servers import ACCESS_KEY, REGION, SECRET_KEY, S3Server, write_random


@pytest.fixture
def rclone(s3_server: S3Server, tmp_path: Path) -> TransferSettings:
    """Transfer settings whose rclone configuration has the remote ``lab`` (moto's S3)."""
    if shutil.which("rclone") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("rclone is not installed (apt-get install rclone)")
        pytest.skip("rclone is not installed (apt-get install rclone)")
    config = tmp_path / "rclone.conf"
    config.write_text(
        "[lab]\ntype = s3\nprovider = Other\nenv_auth = false\n"
        f"access_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\n"
        f"endpoint = {s3_server.endpoint_url}\nregion = {REGION}\nforce_path_style = true\n"
    )
    return s3_server.transfer_settings(tmp_path, rclone=RcloneSettings(config=config))


def test_list_download_upload_through_the_registry(
    rclone: TransferSettings, s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    data = write_random(out / "a.txt", 1000, seed=1)
    write_random(out / "sub" / "b.bin", 3000, seed=2)
    # upload with rclone, read back with the s3 client: the same objects
    assert upload_outputs(out, f"lab://{s3_bucket}/results/", rclone) == 4000
    keys = sorted(
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    )
    assert keys == ["results/a.txt", "results/sub/b.bin"]

    folder = parse_uri(f"lab://{s3_bucket}/results/")
    transport = transport_for(folder, rclone)
    assert type(transport).__name__ == "RcloneTransport"
    listed = {e.path: e for e in transport.list(folder, recursive=True)}
    assert set(listed) == {"a.txt", "sub/b.bin"}
    assert listed["a.txt"].size == 1000
    assert listed["a.txt"].md5 == hashlib.md5(data).hexdigest()
    top = {e.path: e.is_dir for e in transport.list(folder)}
    assert top == {"a.txt": False, "sub": True}
    (one,) = transport.list(parse_uri(f"lab://{s3_bucket}/results/sub/b.bin"))
    assert (one.path, one.size) == ("b.bin", 3000)

    # inputs: a file and a folder, staged like any other scheme's
    inputs = tmp_path / "inputs"
    got = stage_inputs(
        [f"lab://{s3_bucket}/results/a.txt", f"lab://{s3_bucket}/results/|mv:copy"],
        inputs, rclone,
    )  # fmt: skip
    assert got == 5000
    assert (inputs / "a.txt").read_bytes() == data
    assert (inputs / "copy" / "sub" / "b.bin").stat().st_size == 3000
    assert [p for p in inputs.rglob("*") if PARTIAL_MARK in p.name or ".rclone-" in p.name] == []


def test_copy_and_sync_between_rclone_and_local_folders(
    rclone: TransferSettings, s3_bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    write_random(local / "x.txt", 100, seed=3)
    write_random(local / "deep" / "y.txt", 200, seed=4)
    remote = to_uri(f"lab://{s3_bucket}/mirror/", rclone)
    first = sync_folders(to_uri(str(local) + "/"), remote, rclone)
    assert sorted(first.copied) == ["deep/y.txt", "x.txt"]
    again = sync_folders(to_uri(str(local) + "/"), remote, rclone)
    assert again.copied == [] and again.up_to_date == 2
    back = tmp_path / "back"
    size = copy_uri(remote, to_uri(str(back) + "/"), rclone)
    assert (
        size == 300
        and (back / "deep" / "y.txt").read_bytes() == (local / "deep" / "y.txt").read_bytes()
    )


def test_unknown_remote_missing_file_and_missing_rclone_are_clear(
    rclone: TransferSettings, s3_bucket: str, tmp_path: Path
) -> None:
    # a remote of the configuration is a scheme for inputs and outputs alike...
    assert validate_uri(f"lab://{s3_bucket}/out/", "output", rclone).scheme == "lab"
    # ...a name that is neither a scheme nor a remote is refused, naming both lists
    with pytest.raises(InvalidUri) as refused:
        validate_uri(f"nosuch://{s3_bucket}/x", "input", rclone)
    message = str(refused.value)
    assert "unknown scheme 'nosuch'" in message and "remotes of rclone's configuration" in message
    assert "lab" in message and "\n" not in message
    assert SECRET_KEY not in message

    missing = parse_uri(f"lab://{s3_bucket}/nothing-here.txt")
    with pytest.raises(TransferError) as caught:
        list(transport_for(missing, rclone).list(missing))
    assert caught.value.retryable is False and "no such file" in str(caught.value)
    with pytest.raises(TransferError) as caught:
        stage_inputs([missing.text], tmp_path / "in", dataclasses.replace(rclone, retries=0))
    assert caught.value.retryable is False

    absent = dataclasses.replace(
        rclone, rclone=dataclasses.replace(rclone.rclone, command=str(tmp_path / "no-rclone"))
    )
    with pytest.raises(InvalidUri, match="none, or rclone is not installed"):
        validate_uri(f"lab://{s3_bucket}/x", "input", absent)


def test_scitq_fetch_reads_the_remote_named_in_scitq_settings(
    rclone: TransferSettings, s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    s3_server.client().put_object(Bucket=s3_bucket, Key="cli/one.txt", Body=b"1234567")
    assert rclone.rclone.config is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env.update(SCITQ_RCLONE_CONFIG=str(rclone.rclone.config), SCITQ_DATA_DIR=str(tmp_path / "d"))
    command = [sys.executable, "-m", "scitq", "fetch", "list", f"lab://{s3_bucket}/cli/"]
    listed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "one.txt" in listed.stdout and "7" in listed.stdout
    env.pop("SCITQ_RCLONE_CONFIG")  # rclone's default configuration has no remote "lab"
    env["RCLONE_CONFIG"] = str(tmp_path / "none.conf")
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode != 0
    assert "unknown scheme 'lab'" in refused.stderr and len(refused.stderr.splitlines()) == 1
