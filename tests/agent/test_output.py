"""Output capture: decoding, chunking, the cap, spilling, and delivery in one round trip."""

from __future__ import annotations

import asyncio
import itertools
import random
import tracemalloc
import types
from collections import deque
from pathlib import Path
from typing import Any

import psycopg
import pytest

from scitq import errors
from scitq.agent import output as output_module
from scitq.agent.output import CHUNK_BYTES, OutputBatcher, cut_marker
from scitq.db.execution import to_storable
from scitq.db.task import task_cancel, task_claim, task_submit
from scitq.db.worker import worker_register

KIB, MIB = 2**10, 2**20


class Recorder:
    """Stands for the SQL function in pure tests: keeps the first chunk of each seq."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], tuple[str, str]] = {}
        self.calls: list[int] = []  # chunks per call
        self.fail: Exception | None = None

    async def __call__(self, conn: Any, worker_id: int, chunks: Any, now: Any = None) -> int:
        self.calls.append(len(chunks))
        if self.fail is not None:
            raise self.fail
        for execution_id, seq, stream, text in chunks:
            self.rows.setdefault((execution_id, seq), (stream, to_storable(text)))
        return len(chunks)

    def chunks(self, execution_id: int) -> list[tuple[int, str, str]]:
        return [(s, st, t) for (e, s), (st, t) in sorted(self.rows.items()) if e == execution_id]

    def text(self, execution_id: int, stream: str | None = None) -> str:
        chunks = self.chunks(execution_id)
        return "".join(t for _, st, t in chunks if stream is None or st == stream)


def _wrapper(run: Any) -> Any:
    """A stand-in for the named query `execution_append_output`, run by ``run``."""
    return types.SimpleNamespace(run_async=run)


class FakeConn:
    autocommit = True


FAKE_CONN: Any = FakeConn()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recording = Recorder()
    monkeypatch.setattr(output_module, "execution_append_output", _wrapper(recording))
    return recording


def deliver(batcher: OutputBatcher, conn: Any = None) -> int:
    """Flush until nothing is pending; the number of flushes."""

    async def run() -> int:
        flushes = 0
        while batcher.pending_bytes():
            await batcher.flush(conn if conn is not None else FAKE_CONN)
            flushes += 1
        return flushes

    return asyncio.run(run())


def dir_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.iterdir())


def pieces(data: bytes, rng: random.Random, largest: int = 64 * KIB) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        size = rng.randint(1, largest)
        out.append(data[at : at + size])
        at += size
    return out


# pure logic --------------------------------------------------------------------------


def test_character_split_across_reads_is_decoded_once(recorder: Recorder, tmp_path: Path) -> None:
    batcher = OutputBatcher(worker_id=1, spool_dir=tmp_path)
    out = batcher.open(7)
    for byte in "é€😀 ok".encode():
        out.write("stdout", bytes([byte]))
    out.close()
    deliver(batcher)
    assert recorder.text(7) == "é€😀 ok"
    assert out.is_drained and out.bytes_seen == len("é€😀 ok".encode())


def test_invalid_bytes_and_nul_are_escaped_not_dropped(recorder: Recorder, tmp_path: Path) -> None:
    raw = b"a\\b\xff\x00c\xe2\x82"  # literal backslash, invalid byte, NUL, truncated character
    batcher = OutputBatcher(worker_id=1, spool_dir=tmp_path)
    out = batcher.open(1)
    out.write("stderr", raw[:5])
    out.write("stderr", raw[5:])
    out.close()
    deliver(batcher)
    assert recorder.text(1, "stderr") == "a\\b\\xff\\x00c\\xe2\\x82"
    assert recorder.text(1) == to_storable(raw)  # same escaping as the synchronous path


def test_seqs_are_consecutive_and_chunks_bounded(recorder: Recorder, tmp_path: Path) -> None:
    rng = random.Random(1)
    stdout = "".join(f"ligne {i} - ü €\n" for i in range(60_000)).encode()
    stderr = b"".join(f"err {i}\n".encode() for i in range(30_000))
    batcher = OutputBatcher(worker_id=1, spool_dir=tmp_path)
    out = batcher.open(3)
    reads = {"stdout": deque(pieces(stdout, rng)), "stderr": deque(pieces(stderr, rng))}
    for n in itertools.count():
        streams = [stream for stream, left in reads.items() if left]
        if not streams:
            break
        stream = rng.choice(streams)
        out.write(stream, reads[stream].popleft())
        if n % 7 == 0:
            deliver(batcher)
    out.close()
    deliver(batcher)
    chunks = recorder.chunks(3)
    assert [seq for seq, _, _ in chunks] == list(range(len(chunks)))
    assert max(len(text.encode()) for _, _, text in chunks) <= CHUNK_BYTES
    assert recorder.text(3, "stdout") == stdout.decode()
    assert recorder.text(3, "stderr") == stderr.decode()
    assert "\\x" not in recorder.text(3)  # no character was split into escapes


def test_cap_keeps_head_and_tail_with_the_exact_cut(recorder: Recorder, tmp_path: Path) -> None:
    data = "".join(f"{i:09d}\n" for i in range(1_000_000)).encode()  # 10 MB, every line unique
    batcher = OutputBatcher(worker_id=1, spool_dir=tmp_path, cap_bytes=1 * MIB)
    out = batcher.open(5)
    for at in range(0, len(data), 64 * KIB):
        out.write("stdout", data[at : at + 64 * KIB])
    assert out.bytes_cut == len(data) - MIB  # known while running
    out.close()
    deliver(batcher)
    cut = len(data) - MIB
    assert out.bytes_cut == cut and out.bytes_seen == len(data)
    expected = data[: 512 * KIB].decode() + cut_marker(cut) + data[-512 * KIB :].decode()
    assert recorder.text(5) == expected
    markers = [(seq, text) for seq, stream, text in recorder.chunks(5) if stream == "scitq"]
    assert markers == [
        (markers[0][0], f"[scitq: {cut} bytes of output cut here; head and tail kept]\n")
    ]
    assert list(tmp_path.iterdir()) == []  # ring file removed


def test_output_within_cap_is_whole_even_across_the_head_boundary(
    recorder: Recorder, tmp_path: Path
) -> None:
    data = "€" * (300 * KIB)  # 900 KiB; byte 512 KiB falls inside a character
    batcher = OutputBatcher(worker_id=1, spool_dir=tmp_path, cap_bytes=1 * MIB)
    out = batcher.open(2)
    out.write("stdout", data.encode())
    out.write("stderr", b"late")
    out.close()
    deliver(batcher)
    assert out.bytes_cut == 0
    assert recorder.text(2, "stdout") == data
    assert recorder.text(2, "stderr") == "late"
    assert all(stream != "scitq" for _, stream, _ in recorder.chunks(2))


def test_memory_is_bounded_while_the_database_is_down(recorder: Recorder, tmp_path: Path) -> None:
    budget, cap = 1 * MIB, 32 * MIB
    recorder.fail = errors.DatabaseError("cannot reach the database: down")
    batcher = OutputBatcher(worker_id=1, spool_dir=tmp_path, memory_budget_bytes=budget)
    out = batcher.open(9)
    block = (b"0123456789abcdef" * 4 * KIB)[: 64 * KIB]
    total = 200 * 10**6
    tracemalloc.start()
    try:
        for n in range(total // len(block) + 1):
            out.write("stdout" if n % 5 else "stderr", block[: total - n * len(block)])
            if n % 64 == 0:
                with pytest.raises(errors.DatabaseError):
                    asyncio.run(batcher.flush(FAKE_CONN))
                assert batcher.memory_bytes() <= budget
                assert dir_bytes(tmp_path) <= cap + 4 * KIB  # spool + tail ring
        out.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.bytes_seen == total and out.bytes_cut == total - cap
    assert batcher.memory_bytes() <= budget
    assert dir_bytes(tmp_path) <= cap + 4 * KIB
    assert peak < budget + 4 * MIB  # the 200 MB never sat in memory
    recorder.fail = None
    deliver(batcher)
    text = recorder.text(9)
    assert len(text) == cap + len(cut_marker(total - cap))
    assert cut_marker(total - cap) in text
    assert out.is_drained and list(tmp_path.iterdir()) == []


def test_a_lost_reply_is_resent_with_the_same_seqs(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batcher = OutputBatcher(worker_id=1, spool_dir=tmp_path)
    out = batcher.open(4)
    out.write("stdout", b"first\n")

    async def stored_then_lost(*args: Any, **kwargs: Any) -> int:
        await Recorder.__call__(recorder, *args, **kwargs)
        raise errors.DatabaseError("cannot reach the database: reply lost")

    monkeypatch.setattr(output_module, "execution_append_output", _wrapper(stored_then_lost))
    with pytest.raises(errors.DatabaseError):
        asyncio.run(batcher.flush(FAKE_CONN))
    assert batcher.pending_bytes() == len("first\n")  # kept although it was stored
    monkeypatch.setattr(output_module, "execution_append_output", _wrapper(recorder))
    out.write("stdout", b"second\n")
    out.close()
    deliver(batcher)
    assert recorder.calls == [1, 2]  # the first chunk went twice, with its seq
    assert recorder.chunks(4) == [(0, "stdout", "first\n"), (1, "stdout", "second\n")]


def test_discard_drops_pending_output_and_files(recorder: Recorder, tmp_path: Path) -> None:
    batcher = OutputBatcher(worker_id=1, spool_dir=tmp_path, memory_budget_bytes=64 * KIB)
    out = batcher.open(8)
    out.write("stdout", b"x" * (MIB + 1))
    assert batcher.pending_bytes() > 0 and any(tmp_path.iterdir())
    batcher.discard(8)
    out.write("stdout", b"ignored")
    assert batcher.pending_bytes() == 0 and list(tmp_path.iterdir()) == []
    assert deliver(batcher) == 0 and recorder.calls == []


# with the database -------------------------------------------------------------------


class CountingCursor(psycopg.AsyncCursor[Any]):
    statements = 0

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        CountingCursor.statements += 1
        return await super().execute(*args, **kwargs)


async def connect(db: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(db, autocommit=True, cursor_factory=CountingCursor)


def claim(conn: psycopg.Connection[Any], n: int) -> tuple[int, list[dict[str, Any]]]:
    task_submit(conn, "b", [{"command": "x"} for _ in range(n)])
    worker = worker_register(conn, "w1", batches=["b"], concurrency=n, lease_seconds=3600)
    return worker["id"], task_claim(conn, worker["id"], n)


def stored(conn: psycopg.Connection[Any], execution_id: int) -> list[tuple[int, str, str]]:
    rows = conn.execute(
        "SELECT seq, stream::text, text FROM scitq.execution_output"
        " WHERE execution_id = %s ORDER BY seq",
        (execution_id,),
    ).fetchall()
    return [tuple(row) for row in rows]


def stored_text(conn: psycopg.Connection[Any], execution_id: int) -> str:
    return "".join(text for _, _, text in stored(conn, execution_id))


def test_numbered_lines_of_three_executions_are_stored_in_order(
    conn: psycopg.Connection[Any], db: str, tmp_path: Path
) -> None:
    worker_id, claims = claim(conn, 3)
    ids = [c["execution_id"] for c in claims]
    rng = random.Random(3)
    data = {
        eid: "".join(f"{eid} ligne n°{i:06d} é\n" for i in range(100_000)).encode() for eid in ids
    }
    reads = {eid: pieces(data[eid], rng) for eid in ids}

    async def run() -> int:
        aconn = await connect(db)
        batcher = OutputBatcher(worker_id=worker_id, spool_dir=tmp_path)
        outs = {eid: batcher.open(eid) for eid in ids}
        CountingCursor.statements = flushes = 0
        for n in range(max(len(r) for r in reads.values())):
            for eid in ids:
                if n < len(reads[eid]):
                    outs[eid].write("stdout", reads[eid][n])
            if batcher.needs_flush():
                assert await batcher.flush(aconn) > 0
                flushes += 1
        for eid in ids:
            outs[eid].close()
        for eid in ids:
            while not outs[eid].is_drained:
                await batcher.flush(aconn)
                flushes += 1
        assert CountingCursor.statements == flushes  # one round trip per flush
        await aconn.close()
        return flushes

    flushes = asyncio.run(run())
    assert flushes > 10
    for eid in ids:
        rows = stored(conn, eid)
        assert [seq for seq, _, _ in rows] == list(range(len(rows)))
        assert stored_text(conn, eid) == data[eid].decode()


def test_one_flush_is_one_round_trip_for_several_executions(
    conn: psycopg.Connection[Any], db: str, tmp_path: Path
) -> None:
    worker_id, claims = claim(conn, 3)
    ids = [c["execution_id"] for c in claims]

    async def run() -> int:
        aconn = await connect(db)
        batcher = OutputBatcher(worker_id=worker_id, spool_dir=tmp_path)
        for eid in ids:
            out = batcher.open(eid)
            out.write("stdout", f"out {eid}\n".encode())
            out.write("stderr", f"err {eid}\n".encode())
        CountingCursor.statements = 0
        delivered = await batcher.flush(aconn)
        assert CountingCursor.statements == 1
        await aconn.close()
        return delivered

    assert asyncio.run(run()) == 6
    for eid in ids:
        assert stored(conn, eid) == [(0, "stdout", f"out {eid}\n"), (1, "stderr", f"err {eid}\n")]


def test_database_outage_loses_nothing_and_stores_nothing_twice(
    conn: psycopg.Connection[Any], db: str, tmp_path: Path
) -> None:
    worker_id, claims = claim(conn, 3)
    ids = [c["execution_id"] for c in claims]
    budget = 256 * KIB
    written = {eid: b"" for eid in ids}

    def write(outs: dict[int, Any], size: int) -> None:
        for eid in ids:
            data = b"".join(f"{eid}:{len(written[eid]) + i}\n".encode() for i in range(size // 12))
            for at in range(0, len(data), 64 * KIB):
                outs[eid].write("stdout", data[at : at + 64 * KIB])
            written[eid] += data

    async def run() -> None:
        aconn = await connect(db)
        batcher = OutputBatcher(worker_id=worker_id, spool_dir=tmp_path, memory_budget_bytes=budget)
        outs = {eid: batcher.open(eid) for eid in ids}
        write(outs, 100 * KIB)
        assert await batcher.flush(aconn) > 0
        conn.execute("SELECT pg_terminate_backend(%s)", (aconn.info.backend_pid,))
        write(outs, MIB)
        before = batcher.pending_bytes()
        with pytest.raises(errors.DatabaseError):
            await batcher.flush(aconn)
        assert batcher.pending_bytes() == before > 2 * MIB
        assert batcher.memory_bytes() <= budget
        assert len(list(tmp_path.glob("output-*.spool"))) == 3  # spilled beyond the budget
        await aconn.close()
        with pytest.raises(errors.DatabaseError):
            await batcher.flush(aconn)  # a closed connection: still nothing lost
        write(outs, 100 * KIB)
        for out in outs.values():
            out.close()
        aconn = await connect(db)
        for eid in ids:
            await batcher.drain(aconn, eid)
        assert batcher.pending_bytes() == 0
        await aconn.close()

    asyncio.run(run())
    assert list(tmp_path.iterdir()) == []
    for eid in ids:
        rows = stored(conn, eid)
        assert [seq for seq, _, _ in rows] == list(range(len(rows)))
        assert stored_text(conn, eid) == written[eid].decode()


def test_not_live_execution_is_dropped_and_the_others_delivered(
    conn: psycopg.Connection[Any], db: str, tmp_path: Path
) -> None:
    worker_id, claims = claim(conn, 3)
    ids = [c["execution_id"] for c in claims]
    dead = claims[1]
    reported: list[list[int]] = []

    async def run() -> int:
        aconn = await connect(db)
        batcher = OutputBatcher(
            worker_id=worker_id, spool_dir=tmp_path, on_not_live=reported.append
        )
        outs = {eid: batcher.open(eid) for eid in ids}
        for eid in ids:
            outs[eid].write("stdout", f"hello from {eid}\n".encode())
        task_cancel(conn, [dead["task_id"]])
        CountingCursor.statements = 0
        delivered = await batcher.flush(aconn)
        assert CountingCursor.statements == 2  # refused, then the others at once
        outs[dead["execution_id"]].write("stdout", b"after the end\n")  # ignored
        assert batcher.pending_bytes() == 0
        await batcher.drain(aconn, dead["execution_id"])  # nothing left to deliver
        assert outs[dead["execution_id"]].not_live and outs[dead["execution_id"]].is_drained
        assert CountingCursor.statements == 2
        await aconn.close()
        return delivered

    assert asyncio.run(run()) == 2
    assert reported == [[dead["execution_id"]]]
    assert stored(conn, dead["execution_id"]) == []
    for eid in ids:
        if eid != dead["execution_id"]:
            assert stored_text(conn, eid) == f"hello from {eid}\n"


def test_output_text_is_lz4_compressed_where_the_server_has_it(conn):
    try:
        with conn.transaction():
            conn.execute("SET LOCAL default_toast_compression = lz4")
    except psycopg.errors.InvalidParameterValue:
        pytest.skip("this PostgreSQL was built without lz4")
    (method,) = conn.execute(
        "SELECT attcompression FROM pg_attribute"
        " WHERE attrelid = 'scitq.execution_output'::regclass AND attname = 'text'"
    ).fetchone()
    assert method == "l"
