"""Output capture for the agent: decode, cap, batch and deliver stdout/stderr.

Each execution gets an `ExecutionOutput` sink that its command (`scitq.agent.process`)
feeds with raw reads; it never blocks and never waits on the database. Text is decoded
per stream with an incremental UTF-8 decoder and made storable as
`scitq.db.execution.to_storable` does (invalid bytes and NUL written ``\\xNN``). The
first ``cap/2`` bytes (the head) become chunks as they arrive; later bytes go to a
fixed-size ring file holding the last ``cap/2`` bytes (the tail), sent at
`ExecutionOutput.close` after a marker counting the bytes cut.

The `OutputBatcher` sends the chunks of every execution in one call of
``execution_append_output_v1`` per flush. Sequence numbers are given when a chunk is
sealed and never change, so a chunk resent after a lost connection is stored once.
Chunks wait in memory up to a budget shared by all executions, then in one spool file
per execution, read back in order when the database answers again.

File I/O on the spool directory happens in the event loop: appends of at most 64 KiB to
local files, which land in the page cache.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

from scitq import errors
from scitq.db.execution import execution_append_output

logger = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr", "scitq")
#: Largest chunk of stored text (UTF-8 bytes); longer output is split between characters.
CHUNK_BYTES = 64 * 2**10
_RECORD = struct.Struct("<iBI")  # spool record header: seq, stream index, text length


def cut_marker(bytes_cut: int) -> str:
    """The text stored on stream ``scitq`` where output was cut."""
    return f"[scitq: {bytes_cut} bytes of output cut here; head and tail kept]\n"


class Chunk(NamedTuple):
    seq: int
    stream: str
    text: bytes  # storable text, UTF-8 encoded


def _storable(text: str) -> bytes:
    # decoded with backslashreplace: only NUL is left to escape (as to_storable does)
    return text.replace("\x00", "\\x00").encode("utf-8")


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class _Spool:
    """Chunks of one execution waiting on disk: appended at the end, read from the front."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.write_at = 0
        self.read_at = 0
        self.text_bytes = 0  # unread text, without the record headers

    def append(self, chunk: Chunk) -> None:
        header = _RECORD.pack(chunk.seq, STREAMS.index(chunk.stream), len(chunk.text))
        _pwrite(self._fd, header + chunk.text, self.write_at)
        self.write_at += len(header) + len(chunk.text)
        self.text_bytes += len(chunk.text)

    def read(self, limit: int) -> tuple[list[Chunk], int]:
        """Chunks from the front (at least one, about ``limit`` bytes) and the offset after."""
        chunks: list[Chunk] = []
        at, size = self.read_at, 0
        while at < self.write_at and (not chunks or size < limit):
            seq, stream, length = _RECORD.unpack(os.pread(self._fd, _RECORD.size, at))
            text = os.pread(self._fd, length, at + _RECORD.size)
            chunks.append(Chunk(seq, STREAMS[stream], text))
            at, size = at + _RECORD.size + length, size + length
        return chunks, at

    def close(self) -> None:
        os.close(self._fd)
        self.path.unlink(missing_ok=True)


class _TailRing:
    """The last ``size`` bytes of output in a ring file, with the stream of each run."""

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size
        self.written = 0  # bytes ever given to the ring
        self._fd: int | None = None
        self._runs: deque[list[int]] = deque()  # [stream index, length], oldest first
        self.kept = 0  # bytes held: the last ones written

    def append(self, stream: str, data: bytes) -> None:
        if len(data) > self.size:
            self.written += len(data) - self.size
            data = data[-self.size :]
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            at = self.written % self.size
            _pwrite(self._fd, data[: self.size - at], at)
            _pwrite(self._fd, data[self.size - at :], 0)
        except OSError:
            # counted as cut by the marker: the bytes are never dropped silently
            logger.exception("cannot write the output tail", extra={"path": str(self.path)})
            self.written += len(data)
            self._trim(self.kept)
            return
        self.written += len(data)
        index = STREAMS.index(stream)
        if self._runs and self._runs[-1][0] == index:
            self._runs[-1][1] += len(data)
        else:
            self._runs.append([index, len(data)])
        self.kept += len(data)
        self._trim(self.kept - self.size)

    def _trim(self, excess: int) -> None:
        while excess > 0:
            run = self._runs[0]
            drop = min(excess, run[1])
            run[1] -= drop
            excess -= drop
            self.kept -= drop
            if not run[1]:
                self._runs.popleft()

    def pieces(self, piece_bytes: int) -> Iterator[tuple[str, bytes]]:
        """The kept bytes in order, as ``(stream, bytes)`` of at most ``piece_bytes``."""
        at = self.written - self.kept
        for index, length in self._runs:
            while length and self._fd is not None:
                physical = at % self.size
                n = min(length, piece_bytes, self.size - physical)
                yield STREAMS[index], os.pread(self._fd, n, physical)
                at, length = at + n, length - n

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.path.unlink(missing_ok=True)
        self._runs.clear()
        self.kept = 0


class ExecutionOutput:
    """The output sink of one execution (made by `OutputBatcher.open`)."""

    def __init__(self, batcher: OutputBatcher, execution_id: int) -> None:
        self.execution_id = execution_id
        self.bytes_seen = 0
        self._cut = 0
        self.closed = False
        self.not_live = False  # the database said the execution is over: output dropped
        self._batcher = batcher
        self._head_left = batcher.cap_bytes // 2
        ring = batcher.spool_dir / f"tail-{execution_id}.ring"
        self._tail = _TailRing(ring, batcher.cap_bytes - self._head_left)
        self._decoders = {
            s: codecs.getincrementaldecoder("utf-8")("backslashreplace") for s in STREAMS
        }
        self._open: dict[str, bytearray] = {}
        self._next_seq = 0
        self._memory: deque[Chunk] = deque()
        self.memory_bytes = 0
        self._spool: _Spool | None = None

    @property
    def bytes_cut(self) -> int:
        """Bytes dropped from the middle of the output so far (final once closed)."""
        return self._tail.written - self._tail.kept if not self.closed else self._cut

    @property
    def pending_bytes(self) -> int:
        spooled = self._spool.text_bytes if self._spool else 0
        return self.memory_bytes + spooled + sum(len(b) for b in self._open.values())

    @property
    def is_drained(self) -> bool:
        """Closed (or dropped as not live) and everything delivered."""
        return (self.closed or self.not_live) and self.pending_bytes == 0

    def write(self, stream: str, data: bytes) -> None:
        """Take one read of a stream (never blocks)."""
        if stream not in STREAMS:
            raise errors.InvalidArgument(f"unknown output stream {stream!r}: use one of {STREAMS}")
        if self.not_live or not data:
            return
        if self.closed:
            raise errors.InvalidArgument(f"output of execution {self.execution_id} is closed")
        self.bytes_seen += len(data)
        head = data[: self._head_left]
        if head:
            self._head_left -= len(head)
            self._add_text(stream, self._decoders[stream].decode(head))
        if len(head) < len(data):
            self._tail.append(stream, data[len(head) :])

    def close(self) -> None:
        """End of output: flush the decoders, then queue the cut marker and the tail."""
        if self.closed or self.not_live:
            return
        self._cut = self._tail.written - self._tail.kept
        self.closed = True
        if self._cut:
            # the tail does not continue the head: a character split by the cut is escaped
            for stream, decoder in self._decoders.items():
                self._add_text(stream, decoder.decode(b"", final=True))
                decoder.reset()
            self.seal()
            self._queue(Chunk(self._take_seq(), "scitq", cut_marker(self._cut).encode()))
        for stream, piece in self._tail.pieces(CHUNK_BYTES):
            self._add_text(stream, self._decoders[stream].decode(piece))
        for stream, decoder in self._decoders.items():
            self._add_text(stream, decoder.decode(b"", final=True))
        self.seal()
        self._tail.close()

    def seal(self) -> None:
        """Turn the text gathered since the last flush into chunks (one per stream)."""
        for stream, buffer in self._open.items():
            if buffer:
                self._queue(Chunk(self._take_seq(), stream, bytes(buffer)))
                buffer.clear()

    def _take_seq(self) -> int:
        self._next_seq += 1
        return self._next_seq - 1

    def _add_text(self, stream: str, text: str) -> None:
        if not text:
            return
        buffer = self._open.setdefault(stream, bytearray())
        buffer += _storable(text)
        while len(buffer) >= CHUNK_BYTES:
            cut = CHUNK_BYTES
            while cut < len(buffer) and buffer[cut] & 0xC0 == 0x80:  # not inside a character
                cut -= 1
            self._queue(Chunk(self._take_seq(), stream, bytes(buffer[:cut])))
            del buffer[:cut]

    def _queue(self, chunk: Chunk) -> None:
        # memory holds the older chunks, the spool the newer: delivery stays in order
        size = len(chunk.text)
        batcher = self._batcher
        if self._spool is None and batcher.memory_bytes() + size <= batcher.memory_budget_bytes:
            self._memory.append(chunk)
            self.memory_bytes += size
            return
        try:
            if self._spool is None:
                self._spool = _Spool(batcher.spool_dir / f"output-{self.execution_id}.spool")
            self._spool.append(chunk)
        except OSError:
            # over budget rather than lost; delivery may then be out of order (seqs stay right)
            logger.exception("cannot spool output", extra={"execution_id": self.execution_id})
            self._memory.append(chunk)
            self.memory_bytes += size

    def _commit(self, taken: _Taken) -> None:
        """Forget chunks that the database has stored."""
        if self.not_live:
            return
        for _ in range(taken.from_memory):
            self.memory_bytes -= len(self._memory.popleft().text)
        if taken.spool_at is not None and self._spool is not None:
            self._spool.read_at = taken.spool_at
            self._spool.text_bytes -= sum(len(c.text) for c in taken.chunks[taken.from_memory :])
            if self._spool.read_at == self._spool.write_at:
                self._spool.close()
                self._spool = None

    def _drop(self) -> None:
        self.not_live = True
        self._memory.clear()
        self.memory_bytes = 0
        self._open.clear()
        self._tail.close()
        if self._spool is not None:
            self._spool.close()
            self._spool = None


class _Taken(NamedTuple):
    output: ExecutionOutput
    chunks: list[Chunk]
    from_memory: int
    spool_at: int | None


class OutputBatcher:
    """The output of all executions of one agent, delivered in one round trip per flush."""

    def __init__(
        self,
        *,
        worker_id: int,
        spool_dir: Path,
        cap_bytes: int = 32 * 2**20,
        flush_bytes: int = 64 * 2**10,
        memory_budget_bytes: int = 8 * 2**20,
        on_not_live: Callable[[list[int]], None] | None = None,
    ) -> None:
        if cap_bytes < 2:
            raise errors.InvalidArgument(
                f"the output cap must be at least 2 bytes, not {cap_bytes}"
            )
        self.worker_id = worker_id
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.cap_bytes = cap_bytes
        self.flush_bytes = flush_bytes
        self.memory_budget_bytes = memory_budget_bytes
        self.on_not_live = on_not_live
        self._outputs: dict[int, ExecutionOutput] = {}
        self._lock = asyncio.Lock()  # one flush at a time: commits follow their own send

    def open(self, execution_id: int) -> ExecutionOutput:
        if execution_id in self._outputs:
            raise errors.InvalidArgument(f"output of execution {execution_id} is already open")
        output = self._outputs[execution_id] = ExecutionOutput(self, execution_id)
        return output

    def discard(self, execution_id: int) -> None:
        """Drop everything of that execution, delivered or not."""
        output = self._outputs.pop(execution_id, None)
        if output is not None:
            output._drop()

    def pending_bytes(self) -> int:
        """Bytes of text not yet delivered (in memory, being gathered, or spooled)."""
        return sum(output.pending_bytes for output in self._outputs.values())

    def memory_bytes(self) -> int:
        """Bytes of sealed chunks waiting in memory (at most the memory budget)."""
        return sum(output.memory_bytes for output in self._outputs.values())

    def needs_flush(self) -> bool:
        return self.pending_bytes() >= self.flush_bytes

    async def flush(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Deliver pending chunks of all executions in one round trip (autocommit ``conn``).

        Executions the database calls not live lose their output, are reported to
        ``on_not_live`` and the others are sent again at once. Returns the chunks delivered;
        raises `scitq.errors.DatabaseError` (all state kept) if the database is unreachable.
        """
        if not conn.autocommit:
            raise errors.InvalidArgument("output is delivered on an autocommit connection")
        async with self._lock:
            for output in self._outputs.values():
                output.seal()
            taken = self._take()
            delivered = 0
            while taken:
                rows = [(t.output.execution_id, *chunk) for t in taken for chunk in t.chunks]
                try:
                    await execution_append_output.run_async(conn, self.worker_id, rows)
                except errors.ExecutionNotLive as exc:
                    dead = sorted({t.output.execution_id for t in taken} & set(exc.execution_ids))
                    if not dead:
                        raise
                    self._mark_not_live(dead)
                    taken = [t for t in taken if t.output.execution_id not in dead]
                    continue
                for t in taken:
                    t.output._commit(t)
                delivered = len(rows)
                break
            for execution_id, output in list(self._outputs.items()):
                if output.closed and output.is_drained:
                    del self._outputs[execution_id]
            return delivered

    async def drain(self, conn: psycopg.AsyncConnection[Any], execution_id: int) -> None:
        """Flush until nothing of that execution is left to deliver (before finishing it).

        Returns at once for an execution dropped as not live (``on_not_live`` was called);
        raises `scitq.errors.DatabaseError` if the database is unreachable.
        """
        output = self._outputs.get(execution_id)
        while output is not None and not output.not_live and output.pending_bytes:
            await self.flush(conn)

    def _take(self) -> list[_Taken]:
        """What the next round trip sends: all chunks in memory, then spooled ones."""
        limit = max(self.memory_budget_bytes, self.flush_bytes)
        taken: list[_Taken] = []
        size = sum(output.memory_bytes for output in self._outputs.values())
        for output in self._outputs.values():
            chunks, spool_at = list(output._memory), None
            if output._spool is not None and size < limit:
                spooled, spool_at = output._spool.read(limit - size)
                size += sum(len(chunk.text) for chunk in spooled)
                chunks += spooled
            if chunks:
                taken.append(_Taken(output, chunks, len(output._memory), spool_at))
        return taken

    def _mark_not_live(self, execution_ids: list[int]) -> None:
        for execution_id in execution_ids:
            output = self._outputs.pop(execution_id, None)
            if output is not None:
                output._drop()
        logger.warning(
            "executions no longer live: output dropped", extra={"execution_ids": execution_ids}
        )
        if self.on_not_live is not None:
            try:
                self.on_not_live(execution_ids)
            except Exception:
                logger.exception("on_not_live failed", extra={"execution_ids": execution_ids})
