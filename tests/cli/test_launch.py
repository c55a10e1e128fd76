"""`scitq launch`: one task with every option, quoting, and bulk submission from a file."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.cli.conftest import Invoke, assert_one_line_error, submit

pytestmark = pytest.mark.sql


def task_row(conn: psycopg.Connection[Any], task_id: int) -> dict[str, Any]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    row = cur.execute(
        "SELECT t.*, b.name AS batch, ARRAY(SELECT depends_on_id FROM scitq.task_dependency "
        "WHERE task_id = t.id ORDER BY 1) AS depends_on "
        "FROM scitq.task t JOIN scitq.batch b ON b.id = t.batch_id WHERE t.id = %s",
        (task_id,),
    ).fetchone()
    assert row is not None
    return row


def test_exec_mode_keeps_the_quoting_of_every_word(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    words = ["printf", "%s|%s\n", "two words", "it's", "$HOME", "a;b"]

    result = invoke("launch", "-b", "q", "--", *words)

    assert result.exit_code == 0, result.output
    row = task_row(conn, int(result.stdout))
    assert row["shell"] is False
    assert shlex.split(row["command"]) == words  # what the agent will exec
    assert row["batch"] == "q"


def test_shell_mode_stores_the_string_as_written(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    line = "zcat /input/*.gz | grep -c '^@' > $OUTPUT/n.txt"

    result = invoke("launch", "--shell", line)

    assert result.exit_code == 0, result.output
    row = task_row(conn, int(result.stdout))
    assert (row["command"], row["shell"], row["batch"]) == (line, True, "Default")


def test_options_after_the_command_belong_to_the_command(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    result = invoke("launch", "-b", "q", "ls", "-l", "--json")

    assert result.exit_code == 0, result.output
    assert task_row(conn, int(result.stdout))["command"] == "ls -l --json"


def test_every_option_is_stored(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    first = submit(conn, "full", {"command": "true", "name": "index"})[0]
    other = submit(conn, "elsewhere", {"command": "true"})[0]

    result = invoke(
        "launch", "-b", "full", "-n", "quant", "-d", "combinelab/salmon:1.10", "-O", "--gpus all",
        "-i", "s3://reads/s1.fq.gz|gunzip", "-i", "ftp://host/s1_2.fq",
        "-r", "s3://refs/idx.tgz|untar", "-o", "s3://out/s1/", "-R", "index", "-R", str(other),
        "--retry", "3", "--retry-delay", "5", "--download-timeout", "600", "--run-timeout",
        "3600", "-p", "7", "-e", "SAMPLE=s1", "-e", "EMPTY=", "--tag", "s1", "--tag", "rna",
        "--json", "--", "salmon", "quant", "-o", "/output",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["name"] == "quant" and printed["batch"] == "full"
    row = task_row(conn, printed["id"])
    assert row["command"] == "salmon quant -o /output"
    assert row["container"] == "combinelab/salmon:1.10"
    assert row["container_options"] == "--gpus all"
    assert row["inputs"] == ["s3://reads/s1.fq.gz|gunzip", "ftp://host/s1_2.fq"]
    assert row["resources"] == ["s3://refs/idx.tgz|untar"]
    assert row["output"] == "s3://out/s1/"
    assert row["depends_on"] == sorted([first, other])
    assert (row["retries"], row["retry_delay_seconds"]) == (3, 5.0)
    assert (row["download_timeout_seconds"], row["run_timeout_seconds"]) == (600.0, 3600.0)
    assert row["priority"] == 7
    assert row["env"] == {"SAMPLE": "s1", "EMPTY": ""}
    assert row["tags"] == ["s1", "rna"]
    assert row["status"] == "waiting"


def test_uid_goes_to_the_container_options_or_sudo(
    invoke: Invoke, conn: psycopg.Connection[Any]
) -> None:
    in_container = invoke("launch", "-d", "alpine", "-O", "--rm", "-u", "1000", "-g", "100", "id")
    native = invoke("launch", "-u", "1000", "--shell", "id > /output/id")

    assert in_container.exit_code == 0 and native.exit_code == 0, in_container.output
    assert task_row(conn, int(in_container.stdout))["container_options"] == "-u 1000:100 --rm"
    row = task_row(conn, int(native.stdout))
    assert row["shell"] is False
    assert shlex.split(row["command"]) == ["sudo", "-u", "#1000", "sh", "-c", "id > /output/id"]


def test_dry_run_prints_and_submits_nothing(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    result = invoke("launch", "-t", "-b", "dry", "--retry", "2", "--", "echo", "a b")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"batch": "dry", "retries": 2, "command": "echo 'a b'"}
    assert conn.execute("SELECT count(*) FROM scitq.task").fetchone() == (0,)


def test_one_word_with_spaces_gets_a_note(invoke: Invoke) -> None:
    result = invoke("launch", "echo hello")
    assert result.exit_code == 0
    assert "use --shell" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["-e", "NOEQUALS", "true"], 2, "give NAME=VALUE"),
        (["-R", "999", "true"], 4, "depends on task 999, which does not exist"),
        (["-R", "nobody", "true"], 4, "depends on a name that no task of batch"),
        (["-b", "a/b", "true"], 2, "batch"),
        (["-g", "100", "true"], 2, "-g/--gid needs -u/--uid"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(
    invoke: Invoke, conn: psycopg.Connection[Any], args: list[str], code: int, fragment: str
) -> None:
    assert_one_line_error(invoke("launch", *args), code, fragment)
    assert conn.execute("SELECT count(*) FROM scitq.task").fetchone() == (0,)


def test_no_command_is_a_usage_error(invoke: Invoke) -> None:
    result = invoke("launch", "-b", "x")
    assert result.exit_code == 2
    assert "give the command to run" in result.stderr


# -- bulk ---------------------------------------------------------------------------------


def test_from_file_submits_in_chunks_with_defaults_and_names(
    invoke: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "tasks.jsonl"
    lines = [json.dumps({"name": "ref", "command": ["make", "index dir"]}), "", "# comment"]
    lines += [
        json.dumps({"name": f"s{i}", "command": f"run {i}", "depends_on_names": ["ref"]})
        for i in range(12_000)  # three calls of 5,000
    ]
    lines.append(json.dumps({"command": "echo $X | wc", "shell": True, "retries": 0}))
    path.write_text("\n".join(lines) + "\n")

    result = invoke("launch", "-b", "bulk", "--retry", "2", "-e", "X=1", "--from-file", str(path))

    assert result.exit_code == 0, result.output
    assert "submitted 12002 task(s) to batch bulk" in result.stdout
    stats = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE retries = 2), "
        'count(*) FILTER (WHERE env = \'{"X": "1"}\'), '
        "count(*) FILTER (WHERE status = 'waiting') FROM scitq.task"
    ).fetchone()
    assert stats == (12002, 12001, 12002, 12000)
    first = conn.execute("SELECT command FROM scitq.task WHERE name = 'ref'").fetchone()
    assert first == ("make 'index dir'",)
    last = conn.execute("SELECT command, shell FROM scitq.task ORDER BY id DESC LIMIT 1")
    assert last.fetchone() == ("echo $X | wc", True)
    dependencies = conn.execute("SELECT count(*) FROM scitq.task_dependency").fetchone()
    assert dependencies == (12000,)


def test_from_stdin_with_json_output(invoke: Invoke, conn: psycopg.Connection[Any]) -> None:
    data = '{"command": "true", "name": "a"}\n{"command": "false", "depends_on_names": ["a"]}\n'

    result = invoke("launch", "-b", "in", "--from-file", "-", "--json", input=data)

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert [(t["name"], t["status"]) for t in printed] == [("a", "pending"), (None, "waiting")]
    assert conn.execute("SELECT count(*) FROM scitq.task").fetchone() == (2,)


def test_a_bad_line_submits_nothing_and_names_the_line(
    invoke: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    good = [json.dumps({"command": f"echo {i}"}) for i in range(6000)]
    path = tmp_path / "bad.jsonl"
    # line 6002 (after a blank line) fails in the second chunk, on the database side
    path.write_text("\n".join([*good, "", json.dumps({"command": "x", "retries": -1})]) + "\n")

    result = invoke("launch", "-b", "bulk", "--from-file", str(path))

    assert_one_line_error(result, 2, "line 6002")
    assert conn.execute("SELECT count(*) FROM scitq.task").fetchone() == (0,)

    path.write_text('{"command": "ok"}\n{"command": "x", "nope": 1}\n')
    assert_one_line_error(
        invoke("launch", "--from-file", str(path)), 2, "line 2: unknown field 'nope'"
    )
    path.write_text('{"command": "ok"}\nnot json\n')
    assert_one_line_error(invoke("launch", "--from-file", str(path)), 2, "line 2: invalid JSON")
    assert conn.execute("SELECT count(*) FROM scitq.task").fetchone() == (0,)


def test_from_file_and_a_command_are_exclusive(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"command": "true"}\n')
    result = invoke("launch", "--from-file", str(path), "true")
    assert result.exit_code == 2
    assert "not both" in result.stderr
