"""scitq.lib.Server's task methods against v1's documented behaviour (scitq v1 lib.py,
server/api.py): arguments, defaults, results, status words, filters; no agent runs."""

from __future__ import annotations

import shlex
from argparse import Namespace

import pytest

from scitq.errors import InvalidArgument, NotFound
from scitq.lib import HTTPException, Server

pytestmark = pytest.mark.sql

V1_TASK_KEYS = {
    "task_id", "name", "status", "command", "creation_date", "modification_date",
    "status_date", "batch", "input", "output", "container", "container_options",
    "resource", "required_task_ids", "retry", "download_timeout", "run_timeout", "use_cache",
}  # fmt: skip


@pytest.fixture
def server(db):
    with Server(db) as server:
        yield server


def test_task_create_takes_v1_arguments_and_returns_v1_task(server):
    task = server.task_create(
        "sh -c 'zcat /input/*.fastq.gz | wc -l'", name="s1", batch="meta",
        input="s3://bucket/s1/r1.fastq.gz s3://bucket/s1/r2.fastq.gz",
        output="s3://bucket/out/s1", resource="s3://bucket/db.tgz|untar",
        container="gmtscience/metaphlan4:4.0.6", retry=2, run_timeout=3600,
    )  # fmt: skip
    assert set(task) == V1_TASK_KEYS
    assert (task["name"], task["batch"], task["status"]) == ("s1", "meta", "pending")
    assert task["input"] == "s3://bucket/s1/r1.fastq.gz s3://bucket/s1/r2.fastq.gz"
    assert (task["retry"], task["run_timeout"], task["use_cache"]) == (2, 3600, False)
    assert task["container_options"] is None  # v1's default '' means none
    # the space-separated string became one URI per input, as the agent downloads them
    native = server.client.get(task["task_id"])
    assert native.inputs == ("s3://bucket/s1/r1.fastq.gz", "s3://bucket/s1/r2.fastq.gz")
    assert native.resources == ("s3://bucket/db.tgz|untar",)
    # v1 stored the command and split it with shlex at run time: the same words here
    assert shlex.split(native.command) == ["sh", "-c", "zcat /input/*.fastq.gz | wc -l"]
    assert native.shell is False


def test_defaults_lists_requirements_and_shells(server):
    first = server.task_create("true")
    assert (first["batch"], first["status"], first["retry"]) == ("Default", "pending", 0)
    listed = server.task_create("true", input=["s3://b/1", "s3://b/2 s3://b/3"])
    assert listed["input"] == "s3://b/1 s3://b/2 s3://b/3"
    waiting = server.task_create("true", required_task_ids=[first["task_id"]])
    assert waiting["status"] == "waiting"
    assert waiting["required_task_ids"] == [first["task_id"]]
    shell = server.task_create("echo a | tr a b", shell=True)
    assert server.client.get(shell["task_id"]).shell is True
    bash = server.task_create("echo $((1+1))", shell="bash")
    assert shlex.split(bash["command"]) == ["bash", "-c", "echo $((1+1))"]
    paused = server.task_create("true", status="paused")
    assert paused["status"] == "paused"


def test_bad_arguments_are_refused_in_one_line(server):
    with pytest.raises(TypeError):
        server.task_create("true", inputs=["s3://b/1"])  # a native name, not v1's
    with pytest.raises(InvalidArgument, match="v1's debug mode"):
        server.task_create("true", status="debug")
    with pytest.raises(InvalidArgument, match="unknown task status 'done'"):
        server.task_create("true", status="done")
    with pytest.raises(InvalidArgument, match="input takes a URI string"):
        server.task_create("true", input=42)
    with pytest.raises(InvalidArgument, match="style can only be 'dict' or 'object'"):
        Server(server.client.settings.database.url, style="json")


def test_object_style_gives_v1_attribute_names(db):
    with Server(db, style="object") as server:
        task = server.task_create("true", name="obj", batch="o")
        assert isinstance(task, Namespace)
        assert (task.name, task.status, task.batch) == ("obj", "pending", "o")
        listed = server.tasks(batch="o")
        assert [t.task_id for t in listed] == [task.task_id]
        assert server.task_get(task.task_id).name == "obj"


def test_tasks_filters_as_v1(server):
    a = server.task_create("true", name="a_1", batch="x")
    b = server.task_create("true", name="a%1", batch="x")
    c = server.task_create("true", name="a_1", batch="y", required_task_ids=[a["task_id"]])
    ids = lambda found: [t["task_id"] for t in found]  # noqa: E731
    assert ids(server.tasks(batch="x")) == [a["task_id"], b["task_id"]]
    assert ids(server.tasks(name="a_1")) == [a["task_id"], c["task_id"]]  # exact, not LIKE
    assert ids(server.tasks(name="a%1")) == [b["task_id"]]
    assert ids(server.tasks(status="waiting")) == [c["task_id"]]
    assert ids(server.tasks(task_id=[c["task_id"], a["task_id"]])) == [a["task_id"], c["task_id"]]
    assert ids(server.tasks(batch="x", status="pending")) == [a["task_id"], b["task_id"]]
    assert server.tasks(batch="nowhere") == []
    with pytest.raises(InvalidArgument, match="unknown task filter 'command'"):
        server.tasks(command="true")


def test_task_status_keeps_the_order_of_the_ids(server):
    a = server.task_create("true")
    b = server.task_create("true", required_task_ids=[a["task_id"]])
    assert server.task_status([b["task_id"], a["task_id"]]) == ["waiting", "pending"]
    with pytest.raises(NotFound, match="task 999999 does not exist"):
        server.task_status([a["task_id"], 999999])


def test_task_update_changes_status_and_fields(server):
    task = server.task_create("true", batch="u")
    assert server.task_update(task["task_id"], status="paused")["status"] == "paused"
    assert server.task_update(task["task_id"], status="pending")["status"] == "pending"
    # v1's "failed" stopped a task: here it is canceled, which v1 words as failed
    assert server.task_update(task["task_id"], status="failed")["status"] == "failed"
    assert server.client.get(task["task_id"]).status == "canceled"
    # and v1's relaunch (status='pending') restores it
    assert server.task_update(task["task_id"], status="pending")["status"] == "pending"
    # fields change in place, as v1's PUT did; dependencies cannot change
    updated = server.task_update(task["task_id"], command="false", retry=2, input="s3://b/x s3://b/y",
                                 use_cache=True)  # fmt: skip
    assert (updated["command"], updated["retry"], updated["status"]) == ("false", 2, "pending")
    assert updated["input"] == "s3://b/x s3://b/y" and updated["use_cache"] is True
    with pytest.raises(InvalidArgument, match="cannot change the dependencies"):
        server.task_update(task["task_id"], required_task_ids=[1])


def test_task_update_pending_reruns_a_succeeded_task(server):
    task = server.task_create("true", batch="u2")
    worker = server.client.connection.execute(
        "SELECT (scitq.worker_register_v1('w', p_batches => '{u2}')).id"
    ).fetchone()[0]
    (claimed,) = server.client.connection.execute(
        "SELECT execution_id FROM scitq.task_claim_v1(%s, 1)", (worker,)
    ).fetchall()
    server.client.connection.execute(
        "SELECT scitq.execution_finish_v1(%s, jsonb_build_array(jsonb_build_object("
        "'execution_id', %s::bigint, 'return_code', 0)))", (worker, claimed[0]),
    )  # fmt: skip
    assert server.task_get(task["task_id"])["status"] == "succeeded"
    assert server.task_update(task["task_id"], status="pending")["status"] == "pending"


def test_task_get_and_delete(server):
    task = server.task_create("true", name="gone")
    assert server.task_get(task["task_id"])["name"] == "gone"
    assert server.task_delete(task["task_id"])["task_id"] == task["task_id"]
    with pytest.raises(NotFound) as raised:
        server.task_get(task["task_id"])
    assert isinstance(raised.value, HTTPException)  # what v1 scripts catch


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("task_freeze", (1, 1)),
        ("execution_create", (1, 1)),
        ("execution_update", (1,)),
        ("execution_output_write", (1, "x")),
        ("execution_error_write", (1, "x")),
        ("worker_create", ("w", 1)),
        ("worker_ping", (1, 0, 0, "")),
        ("worker_callback", (1, "idle")),
        ("worker_signals", (1,)),
        ("config_rclone", ()),
        ("config_remote", ()),
        ("get", ("/tasks/",)),
        ("put", ("/tasks/1", {})),
        ("post", ("/tasks/", {})),
        ("delete", ("/tasks/1",)),
    ],
)
def test_v1_protocol_methods_say_they_have_no_equivalent(server, method, args):
    with pytest.raises(InvalidArgument, match=rf"^Server\.{method} is part of scitq v1's REST"):
        getattr(server, method)(*args)


def test_no_write_queue(server):
    assert server.queue_size() == 0
