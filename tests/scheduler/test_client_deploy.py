"""Client.deploy: workers asked for from Python (v1's worker_deploy), deployed by the
recruit duty through a provider (the fake one here: in-memory machines)."""

from __future__ import annotations

import pytest

from scitq import Client
from scitq.config import LocalProviderSettings, ProviderSettings, SchedulerSettings, Settings
from scitq.config.scheduler import NamedProviderSettings
from scitq.errors import InvalidArgument
from tests.scheduler.test_recruit import fake, recruitment, rows, run  # noqa: F401 (fixtures)


def named_fake(tmp_path) -> Settings:
    """Settings naming a provider ``fake`` (the scheduler side of these tests runs the
    fake provider under that name): Client.deploy refuses providers nobody configured."""
    named = NamedProviderSettings(name="fake", kind="local", flavors=("small", "large"),
                                  local=LocalProviderSettings(state_dir=tmp_path))  # fmt: skip
    providers = ProviderSettings(named={"fake": named})
    return Settings(scheduler=SchedulerSettings(providers=providers))


def test_deploy_requests_workers_that_the_scheduler_creates(db, conn, recruitment, fake, tmp_path):  # noqa: F811
    with Client(db, settings=named_fake(tmp_path)) as client:
        deployed = client.deploy(2, batch="align", provider="fake", flavor="small",
                                 concurrency=4, prefetch=1)  # fmt: skip
    assert len(deployed) == 2 and len({d.name for d in deployed}) == 2
    instances = rows(conn, "SELECT id, batch, concurrency, prefetch, is_permanent"
                           " FROM scitq.instance ORDER BY id")  # fmt: skip
    assert [i["id"] for i in instances] == [d.instance_id for d in deployed]
    assert all((i["batch"], i["concurrency"], i["prefetch"], i["is_permanent"])
               == ("align", 4, 1, False) for i in instances)  # fmt: skip
    run(conn, recruitment)
    assert len(fake.instances) == 2
    operations = rows(conn, "SELECT id, status FROM scitq.cloud_operation ORDER BY id")
    assert [o["id"] for o in operations] == [d.operation_id for d in deployed]
    assert {o["status"] for o in operations} == {"succeeded"}


def test_deploy_refuses_a_bad_number(db, tmp_path):
    with Client(db, settings=named_fake(tmp_path)) as client, pytest.raises(InvalidArgument):
        client.deploy(0, batch="b", provider="fake")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"provider": "ovh"}, "unknown provider 'ovh': the configured ones are local, fake;"),
        ({"flavor": "huge"}, "provider 'fake' has no flavor 'huge': it serves small, large, local"),
        ({"region": "GRA11"}, "provider 'fake' has no region 'GRA11': it serves local"),
        ({"image": "debian"}, "provider 'fake' runs agents on this machine: it takes no image"),
    ],
)
def test_deploy_refuses_what_no_provider_serves_at_the_call(db, conn, tmp_path, changes, message):
    arguments = {"batch": "b", "provider": "fake", "flavor": "small", **changes}
    refused = pytest.raises(InvalidArgument, match="^" + message.replace("(", r"\("))
    with Client(db, settings=named_fake(tmp_path)) as client, refused:
        client.deploy(1, **arguments)
    assert rows(conn, "SELECT id FROM scitq.instance") == []  # nothing was asked for
