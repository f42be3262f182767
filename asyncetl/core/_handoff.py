"""Stage hand-offs that take what is ready without a round through the event loop.

The bounded queues still make every stage wait when it is ahead, and a stage
that waits is a checkpoint. Each avoided round is one task switch per batch.
The write gate holds the stages back while a sink that writes alone writes.
"""

from __future__ import annotations

from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

T = TypeVar("T")


async def receive(recv: MemoryObjectReceiveStream[T]) -> T:
    try:
        return recv.receive_nowait()
    except anyio.WouldBlock:
        return await recv.receive()


async def send(send: MemoryObjectSendStream[T], item: T) -> None:
    try:
        send.send_nowait(item)
    except anyio.WouldBlock:
        await send.send(item)


class WriteGate:
    """Holds the other stages back while a sink that writes alone writes.

    See :attr:`~asyncetl.core.interfaces.Sink.writes_alone`. The sink stage
    holds the gate for each write; a stage about to start on a batch waits at
    the gate until that write is done. Passing a gate nobody holds takes no
    round through the event loop.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = anyio.Lock(fast_acquire=True)

    async def close(self) -> None:
        """Hold the gate (the sink stage, before a write)."""
        await self._lock.acquire()

    def open(self) -> None:
        """Let the stages waiting at the gate go on, first come first."""
        self._lock.release()

    async def pass_through(self) -> None:
        """Return once no write is under way (at once when none is)."""
        if self._lock.locked():
            # Waiters are let through in turn, so the write after this one waits too.
            await self._lock.acquire()
            self._lock.release()
