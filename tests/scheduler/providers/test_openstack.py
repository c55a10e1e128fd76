"""The openstack provider through the real openstacksdk, against a FAKE Keystone + Nova +
Glance + Neutron endpoint (tests/scheduler/providers/fake_openstack.py): no real cloud is reachable
here. Deploys and destroys also go through the scheduler's operation runner and a real
database, so that the agent role, the classified errors and the retries are checked."""

from __future__ import annotations

import base64
import dataclasses
import re
import socket

import pytest
import yaml
from psycopg.rows import dict_row

from scitq.config import OpenStackSettings, SchedulerSettings
from scitq.db.recruitment import (
    cloud_operation_list,
    instance_list,
    instance_release,
    instance_request,
)
from scitq.scheduler.operations import OperationRunner
from scitq.scheduler.providers.base import InstanceSpec, ProviderError
from scitq.scheduler.providers.cloudinit import Bootstrap, user_data
from scitq.scheduler.providers.openstack import OpenStackProvider
from tests.scheduler.providers.fake_openstack import FakeOpenStack


@pytest.fixture
def cloud():
    fake = FakeOpenStack().start()
    yield fake
    fake.stop()


#: what the scheduler's wheel server would announce (its tests are in test_bootstrap.py)
BOOTSTRAP = Bootstrap(
    version="2.0.0", wheel_url="http://10.0.0.5:8470/scitq-2.0.0-py3-none-any.whl",
    wheel_sha256="0" * 64,
)  # fmt: skip


def settings_for(cloud: FakeOpenStack, **changes) -> OpenStackSettings:
    auth = {"auth_url": cloud.auth_url, "username": "scitq", "password": "secret",
            "project_name": "lab", "user_domain_name": "Default",
            "project_domain_name": "Default"}  # fmt: skip
    base = OpenStackSettings(
        auth=auth, region="GRA11", flavor="b2-7", image="Debian 12", network="Ext-Net",
        key_name="lab-key", poll_seconds=0.02, boot_seconds=5,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


SPEC = InstanceSpec(
    name="scitq-7", batch="rnaseq", concurrency=4, prefetch=1, flavor=None, image=None,
    region=None, database_url="host=db.example user=scitq_worker_scitq-7 password=s3cret",
)  # fmt: skip


def reports():
    lines: list[tuple] = []

    def report(message, progress=None, provider_ref=None):
        lines.append((message, progress, provider_ref))

    return lines, report


def test_create_list_status_delete_through_the_sdk(cloud):
    provider = OpenStackProvider(settings_for(cloud), bootstrap=BOOTSTRAP)
    lines, report = reports()
    created = provider.create(SPEC, report)
    assert created.status == "building"  # active server; the agent registers later
    (body,) = cloud.created_bodies
    assert (body["name"], body["flavorRef"], body["imageRef"]) == ("scitq-7", "f-small", "i-debian")
    assert body["networks"] == [{"uuid": "n-ext"}]
    assert body["key_name"] == "lab-key"
    assert body["metadata"] == {"scitq": "scitq", "scitq_batch": "rnaseq"}
    document = base64.b64decode(body["user_data"]).decode()
    assert document == user_data(SPEC, provider.bootstrap, provider.settings)
    assert document.startswith("#cloud-config\n")
    files = {entry["path"]: entry for entry in yaml.safe_load(document)["write_files"]}
    assert files["/etc/scitq/agent.env"]["permissions"] == "0600"
    assert "SCITQ_DATABASE_URL='host=db.example user=scitq_worker_scitq-7 password=s3cret'" in (
        document
    )
    assert "--batch rnaseq --concurrency 4 --prefetch 1" in document
    assert created.provider_ref in lines[0][0] and lines[0][2] == created.provider_ref
    assert [i.provider_ref for i in provider.list()] == [created.provider_ref]
    assert provider.status(created.provider_ref) == "active"
    provider.delete(created.provider_ref, report)
    assert cloud.servers == {}
    assert provider.status(created.provider_ref) == "deleted"
    provider.delete(created.provider_ref, report)  # gone already: no error


@pytest.mark.parametrize(("change", "error_class", "message"), [
    ({"flavor": "b9-999"}, "config", "unknown flavor 'b9-999' for provider openstack"),
    ({"image": "Windows"}, "config", "unknown image 'Windows' for provider openstack"),
    ({"network": "nowhere"}, "config", "unknown network 'nowhere'"),
])  # fmt: skip
def test_unknown_flavor_image_network_are_config_errors(cloud, change, error_class, message):
    provider = OpenStackProvider(settings_for(cloud, **change), bootstrap=BOOTSTRAP)
    with pytest.raises(ProviderError, match=message) as caught:
        provider.create(SPEC, reports()[1])
    assert caught.value.error_class == error_class
    assert cloud.created_bodies == []


def test_quota_capacity_auth_and_unreachable_are_classified(cloud):
    cloud.create_failure = "quota"
    with pytest.raises(
        ProviderError, match=r"quota exceeded: .*Quota exceeded for cores"
    ) as caught:
        OpenStackProvider(settings_for(cloud), bootstrap=BOOTSTRAP).create(SPEC, reports()[1])
    assert caught.value.error_class == "quota"

    cloud.create_failure = "capacity"
    lines, report = reports()
    with pytest.raises(ProviderError, match="went to ERROR: No valid host") as caught:
        OpenStackProvider(settings_for(cloud), bootstrap=BOOTSTRAP).create(SPEC, report)
    assert caught.value.error_class == "capacity"
    assert cloud.servers == {}  # the failed server was deleted
    assert "deleted after its failure" in lines[-1][0]

    cloud.create_failure = None
    auth = {**settings_for(cloud).auth, "password": "wrong"}
    with pytest.raises(ProviderError, match="authentication refused") as caught:
        OpenStackProvider(settings_for(cloud, auth=auth), bootstrap=BOOTSTRAP).create(
            SPEC, reports()[1]
        )
    assert caught.value.error_class == "auth"

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    auth = {**settings_for(cloud).auth, "auth_url": f"http://127.0.0.1:{port}/identity/v3"}
    with pytest.raises(ProviderError, match="OpenStack unreachable") as caught:
        OpenStackProvider(settings_for(cloud, auth=auth), bootstrap=BOOTSTRAP).create(
            SPEC, reports()[1]
        )
    assert caught.value.error_class == "transient"


def agent_roles(conn) -> set[str]:
    query = "SELECT rolname FROM pg_roles WHERE pg_has_role(rolname, 'scitq_agent', 'MEMBER')"
    return {row[0] for row in conn.execute(query)}


def run_operations(conn, runner: OperationRunner) -> None:
    while runner.dispatch(conn) or runner.running:
        assert runner.wait_idle(30)


def test_deploy_and_destroy_with_an_agent_role(conn, db, cloud):
    settings = SchedulerSettings(agent_database_url="host=db.example port=5432 dbname=scitq")
    runner = OperationRunner(
        settings, {"openstack": OpenStackProvider(settings_for(cloud), bootstrap=BOOTSTRAP)}, db
    )
    try:
        (requested,) = instance_request(conn, "openstack", "rnaseq", 1, concurrency=2)
        run_operations(conn, runner)
        (instance,) = instance_list(conn)
        assert (instance["status"], instance["last_operation_status"]) == ("building", "succeeded")
        server = cloud.servers[instance["provider_ref"]]
        assert server["name"] == requested["name"]
        # the agent's own role: a member of scitq_agent, its password only in the user data
        worker = (
            conn.cursor(row_factory=dict_row)
            .execute(
                "SELECT id, login_role FROM scitq.worker WHERE name = %s", (requested["name"],)
            )
            .fetchone()
        )
        role = worker["login_role"]
        assert re.fullmatch(f"scitq_worker_{requested['name']}_[0-9a-f]{{6}}", role)
        assert conn.execute("SELECT pg_has_role(%s, 'scitq_agent', 'MEMBER')", (role,)).fetchone()[
            0
        ]
        document = base64.b64decode(cloud.created_bodies[0]["user_data"]).decode()
        assert f"user={role}" in document and "host=db.example" in document
        (operation,) = cloud_operation_list(conn)
        assert "password" not in operation["log"]
        assert "database role" in operation["log"]
        # destroy: the server, the worker row and the role go
        assert instance_release(conn, instance["instance_id"], "test") is not None
        run_operations(conn, runner)
        assert cloud.servers == {}
        assert instance_list(conn) == []
        assert (
            conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0]
            == 0
        )
    finally:
        runner.shutdown()


def test_failed_deploys_leave_clear_rows_and_no_role(conn, db, cloud):
    cloud.create_failure = "quota"
    roles_before = agent_roles(conn)
    settings = SchedulerSettings(operation_retry_seconds=0.01)
    runner = OperationRunner(
        settings, {"openstack": OpenStackProvider(settings_for(cloud), bootstrap=BOOTSTRAP)}, db
    )
    try:
        instance_request(conn, "openstack", "rnaseq", 1)
        run_operations(conn, runner)
        (operation,) = cloud_operation_list(conn)
        assert (operation["status"], operation["error_class"], operation["attempts"]) == (
            "failed", "quota", 1,
        )  # fmt: skip
        assert operation["error"].startswith("server creation: quota exceeded:")
        assert conn.execute("SELECT count(*) FROM scitq.worker").fetchone()[0] == 0
        assert "database role scitq_worker_scitq-1_" in operation["log"]  # made, then...
        assert agent_roles(conn) == roles_before  # ...dropped with the failure
    finally:
        runner.shutdown()


def test_unreachable_endpoint_is_retried_with_back_off_then_failed(conn, db, cloud):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    auth = {**settings_for(cloud).auth, "auth_url": f"http://127.0.0.1:{port}/identity/v3"}
    settings = SchedulerSettings(operation_retry_seconds=0.01, operation_attempts=3)
    provider = OpenStackProvider(settings_for(cloud, auth=auth), bootstrap=BOOTSTRAP)
    runner = OperationRunner(settings, {"openstack": provider}, db)
    try:
        instance_request(conn, "openstack", "rnaseq", 1)
        for _ in range(200):
            run_operations(conn, runner)
            (operation,) = cloud_operation_list(conn)
            if operation["status"] == "failed":
                break
        assert (operation["status"], operation["error_class"], operation["attempts"]) == (
            "failed", "transient", 3,
        )  # fmt: skip
        assert operation["log"].count("retrying in") == 2
        assert "OpenStack unreachable" in operation["error"]
        assert [i["status"] for i in instance_list(conn)] == ["error"]
    finally:
        runner.shutdown()
