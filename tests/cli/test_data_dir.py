"""SCITQ_DATA_DIR moves everything scitq writes; a data dir deleted under its running
server is said loudly, not replaced silently."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scitq.config import load_settings
from scitq.embedded.server import EmbeddedServer
from tests.cli.conftest import PROJECT_ROOT


def test_the_data_dir_moves_the_resource_cache_and_the_web_key(tmp_path: Path) -> None:
    settings = load_settings({"SCITQ_DATA_DIR": str(tmp_path)})
    assert settings.database.data_dir == tmp_path
    assert settings.transfer.cache_dir == tmp_path / "resources"
    assert settings.web.secret_key_file == tmp_path / "web-secret-key"
    # the file's [database] data_dir moves them too; an explicit cache_dir still wins
    config = tmp_path / "scitq.toml"
    config.write_text(f'[database]\ndata_dir = "{tmp_path / "d"}"\n')
    moved = load_settings({"SCITQ_CONFIG": str(config)})
    assert moved.transfer.cache_dir == tmp_path / "d" / "resources"
    explicit = load_settings({"SCITQ_CONFIG": str(config), "SCITQ_RESOURCE_CACHE_DIR": "/c"})
    assert explicit.transfer.cache_dir == Path("/c")


@pytest.fixture
def base() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="scitq-dd-", dir="/tmp"))
    directory.chmod(0o755)  # as root the server runs as another user, who must traverse it
    try:
        yield directory
    finally:
        EmbeddedServer(directory / "data").stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.sql
def test_a_data_dir_deleted_under_its_server_is_said_loudly(base: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCITQ_")}
    env.update(PYTHONPATH=str(PROJECT_ROOT), SCITQ_DATA_DIR=str(base / "data"))

    def status() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scitq", "db", "upgrade"], env=env,
                              capture_output=True, text=True, timeout=180)  # fmt: skip

    first = status()
    assert first.returncode == 0, first.stderr
    assert "deleted" not in first.stderr
    assert EmbeddedServer(base / "data").is_running()
    shutil.rmtree(base / "data")
    again = status()
    assert again.returncode == 0, again.stderr
    warning = [line for line in again.stderr.splitlines() if "was deleted" in line]
    assert len(warning) == 1, again.stderr
    assert f"the embedded database in {base / 'data'} was deleted while its server" in warning[0]
    assert "NEW, EMPTY database" in warning[0]


@pytest.mark.parametrize("xdg", [None, "/srv/xdg"])
def test_the_user_directories_are_platformdirs_ones(
    monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    import platformdirs

    from scitq.config import paths

    for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        if xdg is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, xdg)
    config = paths._user_dir("XDG_CONFIG_HOME", ".config", "user_config_dir")
    data = paths._user_dir("XDG_DATA_HOME", ".local/share", "user_data_dir")
    assert config == Path(platformdirs.user_config_dir("scitq"))
    assert data == Path(platformdirs.user_data_dir("scitq"))
    assert paths.default_config_file() == config / "scitq.toml"
