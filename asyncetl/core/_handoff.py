"""Stage hand-offs that take what is ready without a round through the event loop.

The bounded queues still make every stage wait when it is ahead, and a stage
that waits is a checkpoint. Each avoided round is one task switch per batch.
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
