"""Every section of the configuration file: its keys, and unknown keys or sections refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq import config
from scitq.config import load_settings
from scitq.errors import ConfigError, InvalidArgument

#: Each table of the file and its keys (sub-tables included): what users may write.
KEYS: dict[str, set[str]] = {
    "database": {"url", "read_url", "data_dir", "server"},
    "transfer": {
        "retries", "backoff_base_seconds", "backoff_max_seconds", "parallel",
        "timeout_base_seconds", "timeout_min_rate_bytes", "connect_timeout_seconds",
        "read_timeout_seconds", "cache_dir", "s3", "ftp", "ena", "rclone",
    },
    "transfer.rclone": {"config", "command"},
    "transfer.s3": {"endpoint_url", "region", "profile", "access_key_id", "secret_access_key"},
    "transfer.ftp": {"user", "password", "netrc"},
    "transfer.ena": {
        "portal_url", "sra_url", "https_base", "ftp_base", "ca_file", "fasterq_dump",
    },
    "web": {"host", "port", "secret_key", "secret_key_file", "trusted_header", "threads",
            "session_idle_minutes", "session_max_hours", "login_free_attempts",
            "login_lockout_attempts", "login_lockout_minutes", "trusted_proxies"},
    "scheduler": {
        "duty_seconds", "retention_seconds", "timeout_grace_seconds", "output_retention_days",
        "decision_retention_days", "retention_batch", "lock_retry_seconds",
        "lock_check_seconds", "shutdown_grace_seconds", "recruit_seconds",
        "idle_grace_seconds", "boot_timeout_seconds", "operation_threads",
        "operation_attempts", "operation_retry_seconds", "deploy_backoff_seconds",
        "agent_database_url", "wheel_listen", "wheel_url", "agent_wheel", "local",
        "openstack", "providers",
        # partitions and retention (issue 16)
        "failed_output_retention_days", "event_retention_days", "partition_seconds",
        "output_partition_executions", "event_partition_days", "partitions_ahead",
    },
    "scheduler.local": {"state_dir", "max_agents", "agent_options", "stop_grace_seconds"},
    "scheduler.openstack": {
        "cloud", "region", "flavor", "image", "network", "key_name", "security_groups",
        "max_instances", "name_prefix", "install_from", "pip_index_url", "install_command",
        "packages", "container_runtime", "forward_credentials", "boot_seconds", "poll_seconds",
        "auth",
    },
    "scheduler.openstack.auth": {
        "auth_url", "username", "password", "project_name", "project_id",
        "user_domain_name", "project_domain_name", "project_domain_id",
    },
}  # fmt: skip


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """platformdirs reads XDG_* from the process environment: point it at empty dirs."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    return tmp_path


def _load(tmp_path: Path, text: str) -> tuple[Path, config.Settings]:
    path = tmp_path / "scitq.toml"
    path.write_text(text)
    return path, load_settings({"SCITQ_CONFIG": str(path)})


def _refused(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = tmp_path / "scitq.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings({"SCITQ_CONFIG": str(path)})
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "\n" not in message  # one line
    return path, message


def test_the_sections_are_the_top_level_tables() -> None:
    assert set(config.SECTIONS) == {section.split(".")[0] for section in KEYS}


@pytest.mark.parametrize("section", sorted(KEYS))
def test_an_unknown_key_is_refused_in_every_section(tmp_path: Path, section: str) -> None:
    path, message = _refused(tmp_path, f"[{section}]\nbogus_key = 1\n")
    known = ", ".join(sorted(KEYS[section]))
    assert message == f"{path}: [{section}] unknown key 'bogus_key' (known: {known})"


@pytest.mark.parametrize("section", sorted(KEYS))
def test_a_misspelt_key_gets_a_suggestion(tmp_path: Path, section: str) -> None:
    real = sorted(KEYS[section], key=len)[-1]  # long enough to be recognisable
    typo = real[:-1]
    _, message = _refused(tmp_path, f"[{section}]\n{typo} = 1\n")
    assert f"[{section}] unknown key '{typo}', did you mean {real}? (known: " in message


def test_several_unknown_keys_are_named_together(tmp_path: Path) -> None:
    _, message = _refused(tmp_path, "[web]\nprot = 1\nhots = 2\n")
    assert "[web] unknown keys 'prot', 'hots' (known: host, login_free_attempts," in message
    assert "did you mean" not in message


@pytest.mark.parametrize("name", ["agent", "webb", "transfers"])
def test_an_unknown_section_is_refused(tmp_path: Path, name: str) -> None:
    path, message = _refused(tmp_path, f"[{name}]\nconcurrency = 2\n")
    assert message.startswith(f"{path}: unknown section [{name}]")
    assert message.endswith("(known: database, scheduler, transfer, web)")


def test_an_unknown_section_gets_a_suggestion(tmp_path: Path) -> None:
    _, message = _refused(tmp_path, "[webb]\n")
    assert "unknown section [webb], did you mean web?" in message


def test_a_top_level_value_is_an_unknown_section(tmp_path: Path) -> None:
    _, message = _refused(tmp_path, 'url = "postgresql://x"\n')
    assert "unknown section [url]" in message


@pytest.mark.parametrize("section", ["transfer.s3", "scheduler.local", "scheduler.openstack.auth"])
def test_a_sub_table_that_is_not_a_table_is_refused(tmp_path: Path, section: str) -> None:
    parent, _, name = section.rpartition(".")
    path, message = _refused(tmp_path, f'[{parent}]\n{name} = "x"\n')
    assert message == f"{path}: [{section}] must be a table"


def test_every_known_key_is_read(tmp_path: Path) -> None:
    """A file giving every key loads, and each value lands in its field."""
    _, settings = _load(
        tmp_path,
        '[database]\nurl = "host=db"\ndata_dir = "/srv/scitq"\n'
        "[transfer]\nretries = 1\nbackoff_base_seconds = 1\nbackoff_max_seconds = 2\n"
        "parallel = 2\ntimeout_base_seconds = 3\ntimeout_min_rate_bytes = 4\n"
        'connect_timeout_seconds = 5\nread_timeout_seconds = 6\ncache_dir = "/c"\n'
        '[transfer.s3]\nendpoint_url = "http://s3"\nregion = "r"\nprofile = "p"\n'
        'access_key_id = "a"\nsecret_access_key = "s"\n'
        '[transfer.ftp]\nuser = "u"\npassword = "pw"\nnetrc = "/n"\n'
        '[transfer.ena]\nportal_url = "https://p"\nsra_url = "https://s"\n'
        'https_base = "https://h"\nftp_base = "ftp://f"\nca_file = "/ca.pem"\n'
        'fasterq_dump = "/bin/fq"\n'
        '[web]\nhost = "0.0.0.0"\nport = 8080\nsecret_key = "k"\nsecret_key_file = "/k"\n'
        'trusted_header = "X-User"\nthreads = 4\nsession_idle_minutes = 30\n'
        "session_max_hours = 8\nlogin_free_attempts = 3\nlogin_lockout_attempts = 9\n"
        "login_lockout_minutes = 10\ntrusted_proxies = 1\n"
        "[scheduler]\nduty_seconds = 1\nretention_batch = 5\noperation_threads = 2\n"
        'agent_database_url = "host=public"\noutput_retention_days = 7\n'
        '[scheduler.local]\nstate_dir = "/l"\nmax_agents = 3\nagent_options = ["-x"]\n'
        '[scheduler.openstack]\ncloud = "ovh"\nsecurity_groups = ["default"]\n'
        "max_instances = 2\n"
        '[scheduler.openstack.auth]\nauth_url = "https://keystone"\nusername = "alice-keystone"\n',
    )
    assert (settings.database.url, settings.database.data_dir) == ("host=db", Path("/srv/scitq"))
    transfer = settings.transfer
    assert (transfer.retries, transfer.parallel, transfer.read_timeout_seconds) == (1, 2, 6.0)
    assert transfer.cache_dir == Path("/c")
    assert (transfer.s3.profile, transfer.s3.secret_access_key) == ("p", "s")
    assert (transfer.ftp.user, transfer.ftp.netrc) == ("u", Path("/n"))
    assert (transfer.ena.ftp_base, transfer.ena.fasterq_dump) == ("ftp://f", "/bin/fq")
    assert (settings.web.port, settings.web.threads, settings.web.secret_key) == (8080, 4, "k")
    web = settings.web
    assert (web.session_idle_minutes, web.session_max_hours, web.trusted_proxies) == (30, 8, 1)
    assert (web.login_free_attempts, web.login_lockout_attempts, web.login_lockout_minutes) == (
        3, 9, 10,
    )  # fmt: skip
    scheduler = settings.scheduler
    assert (scheduler.duty_seconds, scheduler.retention_batch) == (1.0, 5)
    assert scheduler.output_retention_days == 7.0
    assert scheduler.agent_database_url == "host=public"
    local = scheduler.providers.local
    assert (local.state_dir, local.max_agents, local.agent_options) == (Path("/l"), 3, ("-x",))
    openstack = scheduler.providers.openstack
    assert openstack is not None
    assert (openstack.cloud, openstack.security_groups) == ("ovh", ("default",))
    assert openstack.auth == {"auth_url": "https://keystone", "username": "alice-keystone"}
    assert "alice-keystone" not in repr(openstack)  # credentials are never logged


def test_a_bad_value_in_the_file_names_the_file_section_and_key(tmp_path: Path) -> None:
    path, message = _refused(tmp_path, '[scheduler]\nretention_batch = "lots"\n')
    assert message == (
        f"{path}: [scheduler] retention_batch must be a number (an integer), not 'lots'"
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SCITQ_WEB_PORT": "70000"}, "SCITQ_WEB_PORT: [web] port must be between 0 and 65535"),
        ({"SCITQ_WEB_THREADS": "0"}, "SCITQ_WEB_THREADS: [web] threads must be between 1 and"),
        ({"SCITQ_LOCAL_MAX_AGENTS": "-2"}, "[scheduler.local] max_agents must not be negative"),
        (
            {"SCITQ_SCHEDULER_DUTY_SECONDS": "soon"},
            "SCITQ_SCHEDULER_DUTY_SECONDS: [scheduler] duty_seconds must be a number, not 'soon'",
        ),
        ({"SCITQ_SRA_URL": "sra.example.org"}, "[transfer.ena] sra_url must be a URL"),
    ],
)
def test_a_bad_variable_is_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ)
    assert message in str(info.value)


def test_openstack_needs_a_cloud_or_auth(tmp_path: Path) -> None:
    path, message = _refused(tmp_path, '[scheduler.openstack]\nregion = "GRA11"\n')
    assert message.startswith(f"{path}: [scheduler.openstack] needs cloud")
    assert load_settings({"SCITQ_OPENSTACK_CLOUD": "ovh"}).scheduler.providers.openstack


def test_defaults_that_follow_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"SCITQ_DATA_DIR": str(tmp_path / "d")})
    assert settings.web.secret_key_file == tmp_path / "d" / "web-secret-key"
    assert settings.scheduler.providers.local.state_dir == tmp_path / "d" / "local-agents"


def test_netrc_falls_back_to_the_netrc_variable(tmp_path: Path) -> None:
    path = tmp_path / "scitq.toml"
    path.write_text('[transfer.ftp]\nnetrc = "/from-file"\n')
    with_file = {"SCITQ_CONFIG": str(path), "NETRC": "/from-netrc"}
    assert load_settings(with_file).transfer.ftp.netrc == Path("/from-file")
    assert load_settings({"NETRC": "/from-netrc"}).transfer.ftp.netrc == Path("/from-netrc")
    both = {"SCITQ_NETRC": "/scitq", "NETRC": "/from-netrc"}
    assert load_settings(both).transfer.ftp.netrc == Path("/scitq")


def test_an_empty_url_in_the_file_means_libpq_defaults(tmp_path: Path) -> None:
    _, settings = _load(tmp_path, '[database]\nurl = ""\n')
    assert settings.database.url == ""
    _, settings = _load(tmp_path, '[web]\nhost = ""\nsecret_key = ""\n')
    assert (settings.web.host, settings.web.secret_key) == ("127.0.0.1", None)  # unset


def test_named_providers_are_read_of_their_kind(tmp_path: Path) -> None:
    _, settings = _load(
        tmp_path,
        '[scheduler.providers.ovh]\nkind = "local"\nregions = ["GRA11"]\n'
        'flavors = ["c2-120"]\nmax_agents = 2\n'
        '[scheduler.providers.infomaniak]\nkind = "openstack"\ncloud = "infomaniak"\n'
        'region = "dc3-a"\nmax_instances = 7\n',
    )
    providers = settings.scheduler.providers
    ovh = providers.named["ovh"]
    assert (ovh.kind, ovh.regions, ovh.flavors) == ("local", ("GRA11",), ("c2-120",))
    assert ovh.local is not None and ovh.local.max_agents == 2
    assert ovh.local.state_dir.name == "local-agents-ovh"  # not the local provider's
    infomaniak = providers.named["infomaniak"]
    assert infomaniak.openstack is not None and infomaniak.openstack.cloud == "infomaniak"
    assert providers.names() == ["local", "infomaniak", "ovh"]
    assert providers.quotas()["infomaniak"] == 7
    providers.check_deploy("infomaniak", "any-flavor", "dc3-a")  # its cloud checks flavors
    with pytest.raises(InvalidArgument, match="provider 'infomaniak' has no region 'GRA11'"):
        providers.check_deploy("infomaniak", None, "GRA11")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('kind = "aws"', "[scheduler.providers.ovh] kind must be one of local, openstack, not 'a"),
        ("", "[scheduler.providers.ovh] kind must be one of local, openstack, not None"),
        ('kind = "local"\ncloud = "x"', "[scheduler.providers.ovh] unknown key 'cloud'"),
        ('kind = "openstack"', "[scheduler.providers.ovh] needs cloud (a name in clouds.yaml)"),
        ('kind = "local"\nregions = 3', "[scheduler.providers.ovh] regions must be a list of str"),
    ],
)  # fmt: skip
def test_a_bad_named_provider_is_refused(tmp_path: Path, text: str, message: str) -> None:
    _, refused = _refused(tmp_path, f"[scheduler.providers.ovh]\n{text}\n")
    assert message in refused


def test_a_provider_cannot_take_a_reserved_name(tmp_path: Path) -> None:
    _, refused = _refused(tmp_path, '[scheduler.providers.local]\nkind = "local"\n')
    assert "a provider name is lower-case letters, digits, - and _, and not local" in refused
