"""Helpers for the tests of `scitq.agent.process`: a sink that keeps everything, and a runner."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from scitq.agent.process import CommandResult, CommandSpec, RunningCommand


class Collected:
    """An output sink that keeps everything, and the size of every chunk."""

    def __init__(self) -> None:
        self.data = {"stdout": bytearray(), "stderr": bytearray()}
        self.largest_chunk = 0

    def __call__(self, stream: str, data: bytes) -> None:
        self.data[stream] += data
        self.largest_chunk = max(self.largest_chunk, len(data))

    def text(self, stream: str = "stdout") -> str:
        return self.data[stream].decode()


def execute(
    spec: CommandSpec,
    during: Callable[[RunningCommand, Collected], Awaitable[CommandResult | None]] | None = None,
) -> tuple[CommandResult, Collected]:
    """Run ``spec`` to the end; ``during`` may act on it meanwhile (and end it)."""
    sink = Collected()

    async def main() -> CommandResult:
        running = await RunningCommand.start(spec, sink)
        waiting = asyncio.ensure_future(running.wait())
        if during is not None:
            ended = await during(running, sink)
            if ended is not None:
                assert await waiting == ended
                return ended
        return await waiting

    return asyncio.run(main()), sink
