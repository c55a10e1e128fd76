"""TransferSettings from the environment and the configuration file; .netrc look-ups."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq.config import load_settings, netrc_login
from scitq.errors import ConfigError


def test_transfer_settings_from_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "scitq.toml"
    config.write_text(
        '[transfer]\nretries = 5\ncache_dir = "/scratch/cache"\n'
        '[transfer.s3]\nendpoint_url = "http://file:9000"\nregion = "gra"\n'
        'access_key_id = "AK"\nsecret_access_key = "SK"\n'
        '[transfer.ftp]\nuser = "alice"\npassword = "pw"\n'
    )
    settings = load_settings(
        {"SCITQ_CONFIG": str(config), "SCITQ_S3_ENDPOINT_URL": "http://env:9000",
         "SCITQ_TRANSFER_PARALLEL": "8"}
    ).transfer  # fmt: skip
    assert settings.retries == 5
    assert settings.parallel == 8
    assert settings.cache_dir == Path("/scratch/cache")
    assert settings.s3.endpoint_url == "http://env:9000"  # the environment wins
    assert (settings.s3.region, settings.s3.access_key_id) == ("gra", "AK")
    assert settings.ftp.user == "alice"
    assert "SK" not in repr(settings) and "pw" not in repr(settings)  # never logged


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"SCITQ_TRANSFER_RETRIES": "many"}, "must be a number"),
        ({"SCITQ_TRANSFER_BACKOFF_BASE_SECONDS": "-1"}, "must not be negative"),
        ({"SCITQ_TRANSFER_PARALLEL": "0"}, "at least 1"),
    ],
)
def test_bad_transfer_settings(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings(environ)


def test_netrc_login(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine ftp.example.org login alice password s3cret\n")
    assert netrc_login(netrc, "ftp.example.org") == ("alice", "s3cret")
    assert netrc_login(netrc, "ftp.example.org", "bob") is None
    assert netrc_login(netrc, "other.example.org") is None
    assert netrc_login(tmp_path / "missing", "ftp.example.org") is None
    netrc.write_text("machine\n")
    with pytest.raises(ConfigError, match="cannot read"):
        netrc_login(netrc, "ftp.example.org")
