"""scitq v1's scitq-launch and scitq-manage: every sub-command against v1's documented
flags and output (tables in tabulate's plain format, v1's messages), on a real database
and, where tasks must run, a real agent."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scitq.cli.v1_launch import launch
from scitq.cli.v1_manage import manage
from scitq.cli.v1_table import plain_table
from scitq.errors import InvalidArgument, NotFound
from scitq.lib import Server
from tests.compat.v1_setup import FAST_AGENT, v1_config  # noqa: F401
from tests.fixtures.agents import wait_for

pytestmark = pytest.mark.sql


@pytest.fixture
def v1_env(db, v1_config, monkeypatch):  # noqa: F811
    """SCITQ_SERVER names this test's database, as v1 users set it."""
    monkeypatch.setenv("SCITQ_SERVER", db)
    return db


def run(capsys, command, *argv: str) -> list[str]:
    assert command(list(argv)) == 0
    return capsys.readouterr().out.splitlines()


def table(lines: list[str]) -> list[list[str]]:
    """The words of each line (a cell ending with a newline adds a blank line: skipped)."""
    return [line.split() for line in lines if line.strip()]


def test_plain_table_is_tabulates():
    text = plain_table([[1, "abc", ""], [22, "d", 3]], ["task_id", "name", "x"])
    assert text.splitlines() == [
        "task_id  name  x",
        "      1  abc    ",
        "     22  d     3",
    ]


def test_scitq_launch_flags_and_output(v1_env, capsys):
    out = run(capsys, launch, "-d", "alpine", "-O", "--network none", "-n", "one", "-b", "L",
              "-i", "s3://b/1.fq s3://b/2.fq", "-i", "s3://b/3.fq", "-r", "s3://b/db.tgz|untar",
              "-o", "s3://b/out/", "--retry", "2", "--run-timeout", "60", "--use-cache",
              "--", "sh", "-c", "cat /input/* > /output/all")  # fmt: skip
    assert out[0].startswith("Task queued with task id: ")
    task_id = int(out[0].rsplit(" ", 1)[1])
    with Server(v1_env) as server:
        task = server.client.get(task_id)
    assert (task.name, task.batch, task.container, task.container_options) == (
        "one", "L", "alpine", "--network none")  # fmt: skip
    assert task.inputs == ("s3://b/1.fq", "s3://b/2.fq", "s3://b/3.fq")
    assert (task.resources, task.output, task.retries) == (
        ("s3://b/db.tgz|untar",),
        "s3://b/out/",
        2,
    )
    assert task.command == "sh -c 'cat /input/* > /output/all'"
    second = run(capsys, launch, "-R", str(task_id), "-u", "1000", "-g", "100", "id")
    with Server(v1_env) as server:
        dependent = server.client.get(int(second[0].rsplit(" ", 1)[1]))
    assert dependent.depends_on == (task_id,) and dependent.status == "waiting"
    assert dependent.command == "sudo -u '#1000' -g '#100' id"
    assert run(capsys, launch, "-t", "-d", "img", "-u", "5", "echo", "hi") == [
        "Command that would be sent: echo hi"]  # fmt: skip
    with pytest.raises(InvalidArgument, match="task #1 inputs"):
        launch(["-i", "nowhere://x", "true"])


def test_console_scripts_give_one_line_errors(v1_env):
    bin_dir = os.path.dirname(sys.executable)
    done = subprocess.run([os.path.join(bin_dir, "scitq-launch"), "-R", "x", "true"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (
        2, "scitq-launch: error: -R/--requirements takes task ids, not 'x'\n")  # fmt: skip
    done = subprocess.run([os.path.join(bin_dir, "scitq-manage"), "batch", "delete", "-n", "none"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (
        done.returncode == 4 and done.stderr == "scitq-manage: error: batch 'none' does not exist\n"
    )
    version = subprocess.run([os.path.join(bin_dir, "scitq-manage"), "--version"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert version.stdout.startswith("Version: 2.")


def test_task_batch_recruiter_flavor_and_db_commands(v1_env, capsys):
    with Server(v1_env) as server:
        first = server.task_create("true", name="first", batch="m")
        server.task_create("false", name="second", batch="m", required_task_ids=[first["task_id"]])
    lines = run(capsys, manage, "task", "list", "-b", "m")
    assert lines[0].split() == ["task_id", "name", "status", "command", "creation_date",
                                "modification_date", "status_date", "batch"]  # fmt: skip
    assert [row[1:3] for row in table(lines[1:])] == [["first", "pending"], ["second", "waiting"]]
    headless = run(capsys, manage, "task", "list", "-S", "waiting", "-H")
    assert [row[:2] for row in table(headless)] == [[str(first["task_id"] + 1), "second"]]
    long = run(capsys, manage, "task", "list", "-L", "-b", "m")
    assert long[0].split()[-3:] == ["retry", "run_timeout", "download_timeout"]

    assert run(capsys, manage, "task", "relaunch", "-n", "first") == [
        "This task is already in queue"
    ]
    run(capsys, manage, "task", "update", "-n", "first", "-S", "paused")
    assert table(run(capsys, manage, "task", "list", "-S", "paused", "-H"))[0][1] == "first"
    run(capsys, manage, "task", "relaunch", "-i", str(first["task_id"]))
    # v1's task update changes the fields (scitq.lib.Server.task_update); not dependencies
    manage(["task", "update", "-i", str(first["task_id"]), "-c", "echo updated"])
    assert run(capsys, manage, "task", "list", "-L", "-b", "m", "-H")[0].count("echo updated") == 1
    with pytest.raises(InvalidArgument, match="cannot change the dependencies"):
        manage(["task", "update", "-i", str(first["task_id"]), "-R", "1"])
    with pytest.raises(NotFound, match="No execution for this task"):
        manage(["task", "output", "-n", "first"])

    assert table(run(capsys, manage, "batch", "list")) == [
        ["batch", "pending", "accepted", "running", "failed", "succeeded", "workers"],
        ["m", "1"],
    ]  # fmt: skip  (the waiting task is in no column of v1's table)
    run(capsys, manage, "batch", "stop", "-n", "m", "--term")
    with Server(v1_env) as server:
        assert server.client.progress("m").is_paused
    run(capsys, manage, "batch", "go", "-n", "m", "--cont")
    with Server(v1_env) as server:
        assert not server.client.progress("m").is_paused

    run(capsys, manage, "recruiter", "create", "-b", "m", "-f", "c2-120", "-r", "GRA11",
        "-P", "ovh", "-C", "4", "-W", "2")  # fmt: skip
    run(capsys, manage, "recruiter", "update", "-b", "m", "-C", "8")
    assert table(run(capsys, manage, "recruiter", "list", "-L")) == [
        ["batch", "rank", "flavor", "region", "provider", "concurrency", "prefetch",
         "tasks_per_worker", "minimum_tasks", "maximum_workers"],
        ["m", "1", "c2-120", "GRA11", "ovh", "8", "0", "4", "2"]]  # fmt: skip
    run(capsys, manage, "recruiter", "delete", "-b", "m")
    assert run(capsys, manage, "recruiter", "list", "-H") == [""]

    flavors = table(run(capsys, manage, "flavor", "list", "-P", "ovh", "-r", "GRA11"))
    assert flavors[0][:3] == ["name", "provider", "region"]
    assert [row[0] for row in flavors[1:]] == ["c2-120", "c2-30", "local"]
    assert {tuple(row[1:3]) for row in flavors[1:]} == {("ovh", "GRA11")}

    assert run(capsys, manage, "db", "upgrade") == ["DB migrated"]
    assert run(capsys, manage, "db", "init") == ["DB intialized"]  # v1's spelling
    run(capsys, manage, "task", "delete", "-n", "second")
    run(capsys, manage, "batch", "delete", "-n", "m")
    assert run(capsys, manage, "task", "list", "-H") == [""]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ansible", "path"], "there are no ansible playbooks"),
        (["ansible", "install"], "there is no ansible inventory"),
        (["ansible", "inventory"], "use worker list -L"),
        (["debug", "run"], "there is no debug runner"),
        (["config", "rclone", "--show"], "there is no rclone"),
    ],
)
def test_v1_only_sub_commands_say_why(argv, message):
    with pytest.raises(InvalidArgument, match=f"^scitq-manage {argv[0]} {argv[1]}: .*{message}"):
        manage(argv)


def test_worker_and_execution_commands_with_an_agent(v1_env, capsys, start_agent):
    with Server(v1_env) as server:
        ok = server.task_create("sh -c 'echo out; echo err >&2'", name="ok", batch="w")
        bad = server.task_create("sh -c 'echo no; exit 2'", name="bad", batch="w")
        agent = start_agent("-b", "w", "-c", "2", *FAST_AGENT)
        wait_for(lambda: server.task_status([ok["task_id"], bad["task_id"]])
                 == ["succeeded", "failed"], timeout=60)  # fmt: skip

    workers = table(run(capsys, manage, "worker", "list"))
    assert workers[0] == ["worker_id", "name", "status", "concurrency", "creation_date",
                          "last_contact_date", "batch"]  # fmt: skip
    assert (workers[1][1], workers[1][2], workers[1][3], workers[1][-1]) == (
        agent.name,
        "running",
        "2",
        "w",
    )
    long = run(capsys, manage, "worker", "list", "-L", "-b", "w")
    assert long[0].split()[-2:] == ["failed", "succeeded"] and long[1].split()[-2:] == ["1", "1"]
    assert run(capsys, manage, "worker", "list", "-S", "paused", "-H") == [""]

    assert run(capsys, manage, "task", "output", "-n", "ok", "-o") == ["out", ""]
    assert run(capsys, manage, "task", "output", "-n", "ok", "-e") == ["err", ""]
    both = run(capsys, manage, "task", "output", "-n", "bad")
    assert both[0].split() == ["output", "error"] and both[1].strip() == "no"

    executions = table(run(capsys, manage, "execution", "list", "-b", "w"))
    assert executions[0] == ["execution_id", "task_id", "worker_id", "status", "command",
                             "creation_date", "modification_date", "latest"]  # fmt: skip
    assert [row[3] for row in executions[1:]] == ["failed", "succeeded"]  # newest first
    assert table(run(capsys, manage, "execution", "list", "-S", "failed", "-H"))[0][1] == str(
        bad["task_id"]
    )
    output = run(capsys, manage, "execution", "output", "-n", "bad", "-C", "task_id,status,output")
    assert table(output) == [["task_id", "status", "output"], [str(bad["task_id"]), "failed", "no"]]
    relative = run(
        capsys, manage, "execution", "output", "-i", str(ok["task_id"]), "-N", "-1", "-H"
    )
    assert relative == [""]  # one attempt only: none before the latest

    worker_id = workers[1][0]
    run(capsys, manage, "worker", "update", "-n", agent.name, "-C", "3", "-S", "paused")
    assert table(run(capsys, manage, "worker", "list", "-H"))[0][2:4] == ["paused", "3"]
    with pytest.raises(InvalidArgument, match="flavor cannot change"):
        manage(["worker", "update", "-i", worker_id, "-f", "c2-120"])
    run(capsys, manage, "worker", "delete", "-i", worker_id)
    with pytest.raises(NotFound, match="No such worker"):
        manage(["worker", "delete", "-n", agent.name])


def test_worker_deploy_command(v1_env, capsys):
    run(capsys, manage, "worker", "deploy", "-f", "c2-30", "-r", "GRA11", "-P", "ovh", "-N", "2",
        "-b", "dep", "-C", "2")  # fmt: skip
    with Server(v1_env) as server:
        rows = server.client.connection.execute(
            "SELECT provider, region, flavor, batch, concurrency FROM scitq.instance"
        ).fetchall()
    assert rows == [("ovh", "GRA11", "c2-30", "dep", 2)] * 2
    with pytest.raises(InvalidArgument, match="provider 'ovh' has no region 'SBG5'"):
        manage(["worker", "deploy", "-f", "c2-30", "-r", "SBG5", "-P", "ovh"])
