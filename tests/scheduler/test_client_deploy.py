"""Client.deploy: workers asked for from Python (v1's worker_deploy), deployed by the
recruit duty through a provider (the fake one here: in-memory machines)."""

from __future__ import annotations

import pytest

from scitq import Client
from scitq.errors import InvalidArgument
from tests.scheduler.test_recruit import fake, recruitment, rows, run  # noqa: F401 (fixtures)


def test_deploy_requests_workers_that_the_scheduler_creates(db, conn, recruitment, fake):  # noqa: F811
    with Client(db) as client:
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


def test_deploy_refuses_a_bad_number(db):
    with Client(db) as client, pytest.raises(InvalidArgument):
        client.deploy(0, batch="b", provider="fake")
