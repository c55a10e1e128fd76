"""`scitq recruiter add|list|set|delete|explain|instances|operations` and
`scitq worker deploy`, in-process against a real database."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from scitq.cli import scitq
from scitq.config import SchedulerSettings
from scitq.db.recruitment import cloud_operation_list, instance_list, recruiter_list
from scitq.db.task import task_submit
from scitq.scheduler.duties import DutyContext, Recruitment
from scitq.scheduler.providers.fake import FakeProvider
from scitq.scheduler.recruit import recruit


@pytest.fixture
def invoke(db):
    def run(*args: str):
        return CliRunner().invoke(scitq, ["--database-url", db, *args])

    return run


def test_add_list_set_delete(invoke, conn):
    result = invoke("recruiter", "add", "rnaseq", "-P", "openstack", "-W", "5", "--flavor",
                    "b2-7", "-c", "4", "--tasks-per-worker", "8")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == (
        "recruiter 1: batch rnaseq rank 1, 0 to 5 workers on openstack (flavor b2-7), "
        "concurrency 4, prefetch 0, 8 tasks per worker\n"
    )
    listed = json.loads(invoke("recruiter", "list", "--json").output)
    assert [(r["batch"], r["max_workers"], r["flavor"]) for r in listed] == [("rnaseq", 5, "b2-7")]
    table = invoke("recruiter", "list").output
    assert "rnaseq" in table and "0-5" in table
    result = invoke("recruiter", "set", "rnaseq", "-W", "9", "--flavor", "")
    assert result.exit_code == 0, result.output
    assert "0 to 9 workers on openstack, concurrency 4" in result.output
    assert invoke("recruiter", "set", "rnaseq:1", "--json", "-c", "2").exit_code == 0
    assert recruiter_list(conn)[0]["concurrency"] == 2
    result = invoke("recruiter", "delete", "1", "--yes")
    assert (result.exit_code, result.output) == (0, "recruiter 1 deleted\n")
    assert recruiter_list(conn) == []


@pytest.mark.parametrize(("args", "code", "message"), [
    (["add", "b", "-P", "local", "-W", "2", "--min-workers", "3"], 2,
     "minimum workers (3) must not exceed maximum workers (2)"),
    (["add", "b", "-P", "Local!", "-W", "2"], 2, "invalid provider name 'Local!'"),
    (["set", "nope", "-W", "2"], 4, "no recruiter 'nope': see `scitq recruiter list`"),
    (["set", "b:x", "-W", "2"], 2, "invalid recruiter 'b:x'"),
    (["explain", "42"], 4, "no recruiter '42'"),
])  # fmt: skip
def test_invalid_recruiters_give_one_line_errors(invoke, conn, args, code, message):
    result = invoke("recruiter", *args)
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines() if result.stderr else result.output.splitlines()
    assert len(lines) == 1
    assert message in lines[0]
    assert recruiter_list(conn) == []


def test_explain_shows_the_decisions(invoke, conn, db):
    invoke("recruiter", "add", "b", "-P", "fake", "-W", "2")
    assert "no decision yet" in invoke("recruiter", "explain", "b").output
    task_submit(conn, "b", [{"command": "true"}])
    fake = FakeProvider()
    state = Recruitment(quotas={"fake": 1})  # decisions only: no operation runs
    recruit(DutyContext(conn=conn, settings=SchedulerSettings(), recruitment=state))
    recruit(DutyContext(conn=conn, settings=SchedulerSettings(), recruitment=state))
    output = invoke("recruiter", "explain", "b").output.splitlines()
    assert output[1].endswith(
        "recruit: batch b: target 1 workers (1 runnable or running tasks at 1 per worker), "
        "0 serving and 0 starting: deploying 1 instances on fake (scitq-1)"
    )
    assert "hold: not recruiting for batch b: target 1 workers" in output[2]
    assert fake.instances == {}
    decisions = json.loads(invoke("recruiter", "explain", "b", "--json").output)["decisions"]
    assert [d["decision"] for d in decisions] == ["hold", "recruit"]
    instances = json.loads(invoke("recruiter", "instances", "--json").output)
    assert [(i["name"], i["status"], i["last_operation_status"]) for i in instances] == [
        ("scitq-1", "requested", "pending"),
    ]  # fmt: skip
    operations = invoke("recruiter", "operations").output
    assert "deploy" in operations and "pending" in operations


def test_worker_deploy_requests_instances(invoke, conn):
    result = invoke("worker", "deploy", "-N", "2", "-b", "align", "-P", "local", "-c", "3",
                    "-p", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "2 workers requested on local for batch align: scitq-1, scitq-2"
    )
    instances = [(i["batch"], i["concurrency"], i["prefetch"], i["is_permanent"])
                 for i in instance_list(conn)]  # fmt: skip
    assert instances == [("align", 3, 1, False), ("align", 3, 1, False)]
    assert [o["kind"] for o in cloud_operation_list(conn)] == ["deploy", "deploy"]
    permanent = json.loads(invoke("worker", "deploy", "-b", "align", "-P", "local",
                                  "--permanent", "--json").output)  # fmt: skip
    assert [p["name"] for p in permanent] == ["scitq-3"]
    assert instance_list(conn)[-1]["is_permanent"] is True
    bad = invoke("worker", "deploy", "-b", "align", "-P", "local", "-N", "0")
    assert bad.exit_code == 2


def test_worker_deploy_refuses_what_no_provider_serves(invoke, conn):
    result = invoke("worker", "deploy", "-b", "align", "-P", "ovh")
    assert result.exit_code == 2
    assert "unknown provider 'ovh': the configured ones are local;" in result.output
    region = invoke("worker", "deploy", "-b", "align", "-P", "local", "--region", "GRA11")
    assert region.exit_code == 2
    assert "provider 'local' has no region 'GRA11': it serves local" in region.output
    assert instance_list(conn) == []
