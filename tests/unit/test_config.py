"""Settings: precedence of environment, configuration file and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq import config
from scitq.config import ROOT_DATA_DIR, DatabaseSettings, Settings, load_settings
from scitq.errors import ConfigError


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """platformdirs reads XDG_* from the process environment: point it at empty dirs."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    return tmp_path


def _config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scitq.toml"
    path.write_text(text)
    return path


def test_nothing_configured_means_the_embedded_server() -> None:
    settings = load_settings({})
    assert settings.database.url is None
    assert settings.database.is_embedded


def test_environment_url_beats_the_file(tmp_path: Path) -> None:
    path = _config_file(tmp_path, '[database]\nurl = "postgresql://from-file/scitq"\n')
    from_file = load_settings({"SCITQ_CONFIG": str(path)})
    assert from_file.database.url == "postgresql://from-file/scitq"
    assert not from_file.database.is_embedded

    env = {"SCITQ_CONFIG": str(path), "SCITQ_DATABASE_URL": "postgresql://from-env/scitq"}
    assert load_settings(env).database.url == "postgresql://from-env/scitq"


def test_default_config_file_is_read_from_the_user_config_dir(isolated_dirs: Path) -> None:
    folder = isolated_dirs / "xdg-config" / "scitq"
    folder.mkdir(parents=True)
    (folder / "scitq.toml").write_text('[database]\nurl = "host=default-file"\n')
    assert load_settings({}).database.url == "host=default-file"


@pytest.mark.parametrize("variable", config.LIBPQ_SERVER_VARIABLES)
def test_pg_variables_mean_libpq_defaults(variable: str) -> None:
    database = load_settings({variable: "x"}).database
    assert database.url == ""
    assert not database.is_embedded


def test_pg_variables_lose_to_an_explicit_url(tmp_path: Path) -> None:
    assert load_settings({"PGHOST": "h", "SCITQ_DATABASE_URL": "host=e"}).database.url == "host=e"
    path = _config_file(tmp_path, '[database]\nurl = "host=f"\n')
    assert load_settings({"PGHOST": "h", "SCITQ_CONFIG": str(path)}).database.url == "host=f"


def test_pg_password_alone_does_not_name_a_server() -> None:
    assert load_settings({"PGPASSWORD": "secret"}).database.is_embedded


def test_missing_explicit_config_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml") as info:
        load_settings({"SCITQ_CONFIG": str(missing)})
    assert info.value.exit_code == 2


def test_unreadable_toml_and_wrong_shape_are_config_errors(tmp_path: Path) -> None:
    broken = _config_file(tmp_path, "[database\nurl = ")
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_settings({"SCITQ_CONFIG": str(broken)})
    not_a_table = _config_file(tmp_path, 'database = "postgresql://x"\n')
    with pytest.raises(ConfigError, match=r"\[database\]"):
        load_settings({"SCITQ_CONFIG": str(not_a_table)})


def test_data_dir_from_environment_beats_file_and_expands_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = _config_file(tmp_path, '[database]\ndata_dir = "/srv/from-file"\n')
    assert load_settings({"SCITQ_CONFIG": str(path)}).database.data_dir == Path("/srv/from-file")
    env = {"SCITQ_CONFIG": str(path), "SCITQ_DATA_DIR": "~/scitq-data"}
    assert load_settings(env).database.data_dir == tmp_path / "home" / "scitq-data"


def test_root_keeps_the_embedded_database_in_var_lib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCITQ_DATA_DIR")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert config.default_data_dir() == ROOT_DATA_DIR == Path("/var/lib/scitq")
    assert load_settings({}).database.data_dir == ROOT_DATA_DIR


def test_other_users_keep_it_in_their_data_dir(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCITQ_DATA_DIR")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert config.default_data_dir() == isolated_dirs / "xdg-data" / "scitq"


def test_os_environ_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCITQ_DATABASE_URL", "host=from-os-environ")
    assert load_settings().database.url == "host=from-os-environ"


def test_with_database_url_returns_a_copy() -> None:
    settings = Settings(database=DatabaseSettings(url="host=a", data_dir=Path("/d")))
    embedded = settings.with_database_url(None)
    assert embedded.database.is_embedded
    assert embedded.database.data_dir == Path("/d")
    assert settings.database.url == "host=a"
    with pytest.raises(AttributeError):
        settings.database.url = "host=b"  # type: ignore[misc]


def test_lazy_settings_report_a_section_mistake_when_the_section_is_used(
    tmp_path: Path,
) -> None:
    path = tmp_path / "scitq.toml"
    path.write_text("[scheduler]\nrecruit_intervall = 5\n[web]\nport = 8123\n")
    environ = {"SCITQ_CONFIG": str(path)}
    with pytest.raises(ConfigError, match="recruit_intervall"):
        load_settings(environ)  # by default every section is read, and checked, at once
    lazy = load_settings(environ, lazy=True)
    assert lazy.database.url is None
    assert lazy.web.port == 8123
    with pytest.raises(ConfigError, match="recruit_intervall"):
        lazy.scheduler  # noqa: B018


def test_settings_are_immutable_and_replace_copies(tmp_path: Path) -> None:
    path = tmp_path / "scitq.toml"
    path.write_text("[web]\nport = 8123\n")
    settings = load_settings({"SCITQ_CONFIG": str(path)}, lazy=True)
    with pytest.raises(AttributeError, match="immutable"):
        settings.database = DatabaseSettings()  # type: ignore[misc]
    moved = settings.replace(web=config.WebSettings(port=9000))
    assert (moved.web.port, settings.web.port) == (9000, 8123)
    assert moved.database == settings.database
    assert settings == load_settings({"SCITQ_CONFIG": str(path)})
    assert moved != settings
