"""scitq.lib.Server and the providers named in the configuration: worker_deploy served
by a provider called ``ovh`` (local agents), refused at the call when it cannot be
served; recruiters, flavors; join giving up with the reason when nothing can run the
tasks; how v1's server names map to a database."""

from __future__ import annotations

import pytest

from scitq.config import load_settings
from scitq.config.database import server_database_url
from scitq.db.recruitment import instance_request
from scitq.db.worker import worker_register
from scitq.errors import ConfigError, InvalidArgument, NotFound, WaitStalled, WaitTimeout
from scitq.lib import Server
from tests.compat.v1_setup import scheduler, settings_of, v1_config, write_config  # noqa: F401

pytestmark = pytest.mark.sql


@pytest.fixture
def server(db, v1_config):  # noqa: F811
    with Server(db, settings=settings_of(v1_config)) as server:
        yield server


@pytest.mark.slow
def test_worker_deploy_names_the_configured_provider_region_and_flavor(server, scheduler, tmp_path):  # noqa: F811
    tasks = [server.task_create(f"sh -c 'echo {n}'", name=f"t{n}", batch="d") for n in range(3)]
    answer = server.worker_deploy(number=1, batch="d", region="GRA11", flavor="c2-120",
                                  concurrency=2, prefetch=1, provider="ovh")  # fmt: skip
    assert answer == {"result": "ok"}
    process = scheduler()
    try:
        counts = server.join(tasks, retry=1, timeout=120)
    except WaitTimeout as error:
        logs = [path.read_text() for path in (tmp_path / "ovh-agents").glob("*.log")]
        raise AssertionError("\n".join([process.log(), *logs])) from error
    assert counts["succeeded"] == 3
    worker = server.workers(batch="d")[0]
    assert (worker["provider"], worker["region"], worker["flavor"]) == ("ovh", "GRA11", "c2-120")
    assert (worker["concurrency"], worker["prefetch"], worker["permanent"]) == (2, 1, False)
    assert server.executions(task_id=tasks[0]["task_id"])[0]["output"] == "0\n"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"provider": "azure"}, r"^unknown provider 'azure': the configured ones are local, ovh;"),
        ({"region": "WAW1"}, r"^provider 'ovh' has no region 'WAW1': it serves GRA11, local \("),
        ({"flavor": "i1-180"}, r"^provider 'ovh' has no flavor 'i1-180': it serves c2-120, c2-30"),
    ],
)
def test_worker_deploy_refuses_what_cannot_be_served_at_the_call(server, changes, message):
    arguments = {"number": 2, "batch": "d", "region": "GRA11", "flavor": "c2-120",
                 "concurrency": 1, "provider": "ovh", **changes}  # fmt: skip
    with pytest.raises(InvalidArgument, match=message):
        server.worker_deploy(**arguments)
    assert server.client.connection.execute("SELECT count(*) FROM scitq.instance").fetchone() == (
        0,
    )


def test_region_auto_takes_the_providers_own(server):
    server.worker_deploy(number=1, batch="d", region="auto", flavor="c2-30", concurrency=1,
                         provider="ovh")  # fmt: skip
    row = server.client.connection.execute("SELECT provider, region, flavor FROM scitq.instance")
    assert row.fetchall() == [("ovh", None, "c2-30")]


def test_join_gives_up_when_no_worker_and_no_recruiter(server):
    task = server.task_create("true", batch="lonely")
    with pytest.raises(WaitStalled) as raised:
        server.join([task], give_up_after=0.5)
    message = str(raised.value)
    assert "no worker serves batch 'lonely'" in message
    assert "no worker is being deployed for it and it has no recruiter" in message
    with pytest.raises(WaitTimeout, match=r"1 of 1 tasks still to run after 0\.3 s"):
        server.join([task], timeout=0.3, give_up_after=None)


def test_join_says_when_no_scheduler_deploys_the_workers_asked_for(server):
    task = server.task_create("true", batch="asked")
    server.worker_deploy(1, "asked", "GRA11", "c2-120", 1, "ovh")
    with pytest.raises(WaitStalled, match="no scheduler deploys them: is `scitq scheduler`"):
        server.join([task], give_up_after=1)


@pytest.mark.slow
def test_join_gives_up_when_deploys_fail(db, tmp_path, scheduler, monkeypatch):  # noqa: F811
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = write_config(tmp_path, state_dir=blocker / "agents")
    monkeypatch.setenv("SCITQ_CONFIG", str(config))
    with Server(db, settings=settings_of(config)) as server:
        task = server.task_create("true", batch="doomed")
        server.worker_deploy(1, "doomed", "GRA11", "c2-120", 1, "ovh")
        scheduler()
        with pytest.raises(WaitStalled) as raised:
            server.join([task], give_up_after=2, timeout=60)
    assert "deploying workers for it fails (1 failed, last: cannot write in" in str(raised.value)


def test_recruiters_as_v1(server):
    created = server.recruiter_create("r", 1, tasks_per_worker=4, flavor="c2-120",
                                      concurrency=4, region="GRA11", provider="ovh",
                                      prefetch=1, maximum_workers=2)  # fmt: skip
    assert created == {"batch": "r", "rank": 1, "tasks_per_worker": 4,
                       "worker_flavor": "c2-120", "worker_provider": "ovh",
                       "worker_region": "GRA11", "worker_concurrency": 4,
                       "worker_prefetch": 1, "minimum_tasks": None,
                       "maximum_workers": 2}  # fmt: skip
    default_cap = server.recruiter_create("r", 2, 1, "c2-30", 1, provider="ovh")
    assert default_cap["maximum_workers"] == 3  # the provider's quota (max_agents)
    assert [r["rank"] for r in server.recruiters(batch="r")] == [1, 2]
    updated = server.recruiter_update("r", 1, concurrency=8, maximum_workers=3)
    assert (updated["worker_concurrency"], updated["maximum_workers"]) == (8, 3)
    assert server.recruiters_match(batch="r") == []  # no deployed worker to reuse
    assert server.recruiter_delete("r", 2)["rank"] == 2
    assert [r["rank"] for r in server.recruiters()] == [1]
    with pytest.raises(NotFound, match="batch 'r' has no recruiter of rank 5"):
        server.recruiter_delete("r", 5)
    with pytest.raises(InvalidArgument, match="provider 'ovh' has no flavor 'auto:cpu>=32'"):
        server.recruiter_create("r", 3, 1, "auto:cpu>=32", 1, provider="ovh")
    with pytest.raises(InvalidArgument, match="give provider="):
        server.recruiter_create("r", 3, 1, "c2-120", 1)
    with pytest.raises(InvalidArgument, match="minimum_tasks does not exist in scitq v2"):
        server.recruiter_create("r", 3, 1, "c2-120", 1, provider="ovh", minimum_tasks=10)


def test_flavors_are_those_the_providers_serve(server):
    flavors = server.flavors(provider="ovh")
    assert [(f["name"], f["region"], f["available"]) for f in flavors] == [
        ("c2-120", "GRA11", 3), ("c2-30", "GRA11", 3), ("local", "GRA11", 3),
        ("c2-120", "local", 3), ("c2-30", "local", 3), ("local", "local", 3)]  # fmt: skip
    assert len(server.flavors(limit=2)) == 2
    assert server.flavor_find()["name"] == "local"  # the local provider comes first
    assert len(server.flavor_find(n=2)) == 2
    with pytest.raises(InvalidArgument, match="no flavor catalogue"):
        server.flavors(min_cpu=32)


def test_the_server_argument_and_scitq_server(db, v1_config):  # noqa: F811
    # SCITQ_SERVER (or [database] server) names the database when Server() gets none
    with Server(settings=load_settings({"SCITQ_SERVER": db})) as server:
        assert server.task_create("true")["batch"] == "Default"
        assert server.ip == db
    with Server(ip=db) as server:  # v1's keyword
        assert len(server.tasks()) == 1


@pytest.mark.parametrize(
    ("name", "configured", "expected"),
    [
        (None, None, None),
        ("127.0.0.1", None, None),  # v1's default server: this machine, the embedded one
        ("http://localhost:5000", None, None),
        ("scitq.lab", None, "dbname=scitq host=scitq.lab"),
        ("scitq.lab:6432", None, "dbname=scitq host=scitq.lab port=6432"),
        ("scitq.lab:5000", None, "dbname=scitq host=scitq.lab"),  # v1's REST port
        ("http://scitq.lab:5000", "postgresql://alice:pw@db:5433/prod",
         "user=alice password=pw dbname=prod host=scitq.lab port=5433"),
        ("127.0.0.1", "postgresql://alice@db/prod", "user=alice dbname=prod host=127.0.0.1"),
        ("postgresql://u@h/d", None, "postgresql://u@h/d"),
        (None, "postgresql://u@h/d", "postgresql://u@h/d"),
    ],
)  # fmt: skip
def test_v1_server_names_map_to_a_database(name, configured, expected):
    assert server_database_url(name, configured) == expected


@pytest.mark.parametrize("bad", ["ftp://scitq.lab", "two words", "host:99999x"])
def test_a_bad_server_name_is_refused(bad):
    with pytest.raises(ConfigError, match="give a host name, host:port, http://host:5000"):
        server_database_url(bad, None)


def test_a_deployed_worker_shows_its_provider_before_the_scheduler_links_it(server, conn):
    # the agent of a deployed instance registers as the instance's name; the scheduler's
    # next duty links them: until then v1's workers() finds the instance by that name
    (instance,) = instance_request(conn, "ovh", "d", 1, flavor="c2-120", region="GRA11",
                                   concurrency=2)  # fmt: skip
    registered = worker_register(conn, instance["name"], batches=["d"], concurrency=2)
    (worker,) = server.workers(batch="d")
    assert worker["worker_id"] == registered["id"]
    assert (worker["provider"], worker["region"], worker["flavor"]) == ("ovh", "GRA11", "c2-120")
    assert worker["permanent"] is False  # as deployed, not the unlinked row's default
    other = worker_register(conn, "somewhere-else", batches=["d"])
    shown = {w["worker_id"]: w for w in server.workers(batch="d")}
    assert shown[other["id"]]["provider"] is None  # no instance of that name
