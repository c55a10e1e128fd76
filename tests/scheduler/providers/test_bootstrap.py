"""What a recruited instance gets: the scheduler's wheel server, the install it runs
(exactly the scheduler's version, checked), the container runtime it asks for, and the
credentials it receives in 0600 files only: never in the scheduler's logs or rows.

The boot of this user data by cloud-init is in tests/scheduler/test_cloud_boot.py."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml
from psycopg import sql

from scitq.config import OpenStackSettings, S3Settings, SchedulerSettings, TransferSettings
from scitq.config.transfer import FtpSettings, RcloneSettings
from scitq.db.recruitment import instance_request
from scitq.errors import ConfigError
from scitq.scheduler.operations import OperationRunner
from scitq.scheduler.providers.base import InstanceSpec, ProviderError
from scitq.scheduler.providers.cloudinit import (
    _FETCH,
    ENV_PATH,
    RCLONE_PATH,
    Bootstrap,
    forwarded_credentials,
    user_data,
)
from scitq.scheduler.providers.openstack import OpenStackProvider
from scitq.scheduler.wheel_server import WheelServer, agent_bootstrap
from scitq.version import __version__
from tests.scheduler.providers.fake_openstack import FakeOpenStack
from tests.scheduler.providers.test_openstack import run_operations, settings_for

SPEC = InstanceSpec(
    name="scitq-7", batch="rnaseq", concurrency=4, prefetch=1, flavor=None, image=None,
    region=None, database_url="host=db.example user=scitq_worker_scitq-7 password=s3cret",
)  # fmt: skip
S3_SECRET = "s3-secret-Zq81kD"
FTP_PASSWORD = "ftp-pass-Hy62"
TRANSFER = TransferSettings(
    s3=S3Settings(endpoint_url="http://s3.lab:9000", access_key_id="AKLAB",
                  secret_access_key=S3_SECRET),
    ftp=FtpSettings(user="lab", password=FTP_PASSWORD, netrc=None),
)  # fmt: skip


def fake_wheel(directory: Path, version: str = __version__) -> Path:
    path = directory / f"scitq-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("scitq/__init__.py", "")
    return path


def document(bootstrap: Bootstrap, **changes: object) -> dict:
    settings = dataclasses.replace(OpenStackSettings(cloud="lab"), **changes)  # type: ignore[arg-type]
    text = user_data(SPEC, bootstrap, settings)
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def files_of(parsed: dict) -> dict[str, dict]:
    return {entry["path"]: entry for entry in parsed["write_files"]}


def test_the_wheel_server_serves_the_running_version_and_its_digest(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path)
    settings = SchedulerSettings(wheel_listen="127.0.0.1:0", agent_wheel=wheel)
    bootstrap, server = agent_bootstrap(settings, TRANSFER)
    assert server is not None
    try:
        assert bootstrap.version == __version__
        assert bootstrap.wheel_url == server.url and bootstrap.wheel_url.endswith(wheel.name)
        body = urllib.request.urlopen(bootstrap.wheel_url, timeout=10).read()
        assert body == wheel.read_bytes()
        assert hashlib.sha256(body).hexdigest() == bootstrap.wheel_sha256
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bootstrap.wheel_url.rsplit("/", 1)[0] + "/etc/passwd")
        assert refused.value.code == 404
        # the instance's check: the right digest installs, another one stops the install
        target = tmp_path / "fetched.whl"
        fetch = [sys.executable, "-c", _FETCH, bootstrap.wheel_url]
        ok = subprocess.run([*fetch, bootstrap.wheel_sha256 or "", str(target)], timeout=30)
        assert ok.returncode == 0 and target.read_bytes() == body
        target.unlink()
        bad = subprocess.run([*fetch, "0" * 64, str(target)], capture_output=True, text=True)
        assert bad.returncode != 0 and "the scheduler announced 000" in bad.stderr
        assert not target.exists()
    finally:
        server.stop()


def test_a_wheel_of_another_version_or_no_wheel_is_a_clear_error(tmp_path: Path) -> None:
    other = fake_wheel(tmp_path, "1.2.3")
    with pytest.raises(ConfigError, match=r"is scitq 1\.2\.3; this scheduler runs scitq"):
        WheelServer("127.0.0.1:0", None, other).start()
    with pytest.raises(ConfigError, match="is not a scitq wheel file"):
        WheelServer("127.0.0.1:0", None, tmp_path / "nothing.whl").start()
    with pytest.raises(ConfigError, match="must be host:port"):
        WheelServer("8470", None, other)
    # deploying with the wheel server off says what to set
    with pytest.raises(ProviderError, match="wheel server, which is off") as caught:
        user_data(SPEC, Bootstrap(version=__version__), OpenStackSettings(cloud="lab"))
    assert caught.value.error_class == "config"


def test_install_is_pinned_to_the_schedulers_version_and_checked() -> None:
    served = Bootstrap(version="2.1.0", wheel_url="http://10.0.0.5:8470/scitq-2.1.0-py3-none-any.whl",
                       wheel_sha256="ab" * 32)  # fmt: skip
    script = files_of(document(served))["/etc/scitq/install-scitq.sh"]
    assert script["permissions"] == "0700"
    assert "ab" * 32 in script["content"] and served.wheel_url in script["content"]
    assert '[ "$found" != "scitq 2.1.0" ]' in script["content"]
    index = files_of(
        document(served, install_from="index", pip_index_url="https://pypi.lab/simple")
    )
    content = index["/etc/scitq/install-scitq.sh"]["content"]
    assert "install --quiet --index-url https://pypi.lab/simple scitq==2.1.0" in content
    assert served.wheel_url not in content and '"scitq 2.1.0"' in content
    parsed = document(served)
    assert parsed["packages"] == ["python3-venv"] and parsed["package_update"] is True
    start = ("sh /etc/scitq/install-scitq.sh && systemctl daemon-reload && systemctl enable "
             "--now scitq-agent.service")  # fmt: skip
    assert parsed["runcmd"] == [["sh", "-c", start]]
    assert document(served, container_runtime="docker")["packages"] == ["python3-venv", "docker.io"]
    assert document(served, container_runtime="podman", packages=())["packages"] == ["podman"]
    assert "packages" not in document(served, packages=())


def test_credentials_travel_in_0600_files_only(tmp_path: Path) -> None:
    rclone = tmp_path / "rclone.conf"
    rclone.write_text("[lab]\ntype = s3\nsecret_access_key = rclone-secret\n")
    transfer = dataclasses.replace(TRANSFER, rclone=RcloneSettings(config=rclone))
    env, rclone_text = forwarded_credentials(transfer)
    bootstrap = Bootstrap(
        version="2.0.0", wheel_url="http://h:1/scitq-2.0.0-py3-none-any.whl",
        wheel_sha256="cd" * 32, environment=env, rclone_config=rclone_text,
    )  # fmt: skip
    assert "rclone-secret" not in repr(bootstrap) and S3_SECRET not in repr(bootstrap)
    files = files_of(document(bootstrap))
    agent_env = files[ENV_PATH]
    assert agent_env["permissions"] == "0600"
    lines = agent_env["content"].splitlines()
    assert f"SCITQ_S3_SECRET_ACCESS_KEY='{S3_SECRET}'" in lines
    assert f"SCITQ_FTP_PASSWORD='{FTP_PASSWORD}'" in lines
    assert f"SCITQ_RCLONE_CONFIG='{RCLONE_PATH}'" in lines
    assert files[RCLONE_PATH]["permissions"] == "0600"
    assert "rclone-secret" in files[RCLONE_PATH]["content"]
    for path, entry in files.items():
        if path not in (ENV_PATH, RCLONE_PATH):
            for secret in (S3_SECRET, FTP_PASSWORD, "rclone-secret", "s3cret"):
                assert secret not in entry["content"], path
    kept = files_of(document(bootstrap, forward_credentials=False))
    assert S3_SECRET not in kept[ENV_PATH]["content"] and RCLONE_PATH not in kept
    with pytest.raises(ProviderError, match="SCITQ_S3_SECRET_ACCESS_KEY holds a quote"):
        document(dataclasses.replace(bootstrap, environment={"SCITQ_S3_SECRET_ACCESS_KEY": "a'b"}))


def _all_rows(conn) -> str:
    """Every row of every table of the scitq schema, as text."""
    tables = conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'scitq' AND table_type = 'BASE TABLE'"
    ).fetchall()
    text = []
    for (table,) in tables:
        query = sql.SQL("SELECT row_to_json(t)::text FROM scitq.{} t").format(sql.Identifier(table))
        text += [row[0] for row in conn.execute(query)]
    return "\n".join(text)


def test_no_secret_in_the_schedulers_logs_or_rows(
    conn, db, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = FakeOpenStack().start()
    wheel = fake_wheel(tmp_path)
    settings = SchedulerSettings(
        agent_database_url="host=db.example port=5432 dbname=scitq",
        wheel_listen="127.0.0.1:0", agent_wheel=wheel,
    )  # fmt: skip
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's included
    bootstrap, server = agent_bootstrap(settings, TRANSFER)
    provider = OpenStackProvider(settings_for(cloud), bootstrap=bootstrap)
    runner = OperationRunner(settings, {"openstack": provider}, db)
    try:
        instance_request(conn, "openstack", "rnaseq", 1)
        run_operations(conn, runner)
        (body,) = cloud.created_bodies
        sent = base64.b64decode(body["user_data"]).decode()
        agent_env = files_of(yaml.safe_load(sent))[ENV_PATH]["content"]
        password = agent_env.split("password=", 1)[1].split()[0].strip("'")
        assert len(password) >= 24 and S3_SECRET in agent_env  # they did travel...
        logged, stored = caplog.text, _all_rows(conn)
        assert "cloud_deploy" in stored or "deploy" in stored  # ...and rows exist
        for secret in (password, S3_SECRET, FTP_PASSWORD):
            assert secret not in logged, "a secret reached the scheduler's log"
            assert secret not in stored, "a secret reached a row of the database"
        assert body["user_data"] not in logged  # nor the user data, even encoded
    finally:
        runner.shutdown()
        assert server is not None
        server.stop()
        cloud.stop()


def test_the_scheduler_gives_its_providers_the_wheel_and_the_credentials(
    db, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from scitq.config import ProviderSettings
    from scitq.scheduler.app import Scheduler

    providers = ProviderSettings(openstack=OpenStackSettings(cloud="lab"))
    settings = SchedulerSettings(
        wheel_listen="127.0.0.1:0", agent_wheel=fake_wheel(tmp_path), providers=providers
    )
    scheduler = Scheduler(settings, db, transfer=TRANSFER)
    recruitment = scheduler._start_recruitment()
    assert recruitment.runner is not None
    try:
        provider = recruitment.runner.providers["openstack"]
        assert isinstance(provider, OpenStackProvider)
        url = provider.bootstrap.wheel_url
        assert url is not None and url.endswith(f"scitq-{__version__}-py3-none-any.whl")
        assert urllib.request.urlopen(url, timeout=10).status == 200
        assert provider.bootstrap.environment["SCITQ_S3_SECRET_ACCESS_KEY"] == S3_SECRET
    finally:
        recruitment.runner.shutdown()
        assert scheduler._bootstrap is not None and scheduler._bootstrap[1] is not None
        scheduler._bootstrap[1].stop()
    # a wheel that cannot be served: said in the log, and deploys say what to set
    broken = dataclasses.replace(settings, agent_wheel=tmp_path / "missing.whl")
    later = Scheduler(broken, db, transfer=TRANSFER)._start_recruitment()
    assert later.runner is not None
    try:
        assert "agents' wheel not served: [scheduler] agent_wheel" in caplog.text
        provider = later.runner.providers["openstack"]
        assert isinstance(provider, OpenStackProvider)
        assert provider.bootstrap.wheel_url is None
    finally:
        later.runner.shutdown()
