"""Sending a file's chunks while its next block is read: one block ahead, no more.

Read step by step, the event loop waited for each block's read in a worker
thread (and for the thread to get the GIL back) with nothing else to do: on a
loaded machine it sat idle for about two fifths of a run. Here a reader task
takes the next step (a read in the worker thread) as soon as the sending task
has taken the last one, so the read overlaps the sending of the block before.

Memory stays bounded: the hand-over stream has no buffer, so the reader holds
at most one step that the sender has not taken, and reads the one after only
once it is taken. Positions stay exact: they travel with the chunks, which are
sent in file order, and a stop (cancellation) ends both tasks, the read in the
thread first finishing, so nothing read ahead is sent or committed. A failure
to read is handed over in its turn, after the chunks of every block read
before it, and raised then, by itself rather than as a group of one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import TypeVar

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from asyncetl.connectors.files._tail import Step
from asyncetl.core.batch import Chunk

__all__ = ["send_ahead"]

T = TypeVar("T")
R = TypeVar("R")


async def send_ahead(
    reading: AsyncGenerator[Step[T], None],
    send: ObjectSendStream[Chunk[R]],
    each: Callable[[Chunk[T]], Chunk[R]],
) -> None:
    """Send ``each(chunk)`` for every chunk of ``reading``'s steps, one step read ahead.

    :raises Exception: what reading raised, once the chunks before it are sent,
        or what sending raised.
    """
    ahead, taken = anyio.create_memory_object_stream[Step[T] | Exception](0)
    failure: Exception | None = None
    # Closed here too, in case the reader is cancelled before it ever runs.
    async with aclosing(reading), ahead, taken, anyio.create_task_group() as tg:
        tg.start_soon(_read_ahead, reading, ahead)
        try:
            await _send_steps(taken, send, each)
        except Exception as exc:  # raised below by itself, not as a group of one
            failure = exc
        tg.cancel_scope.cancel()  # the reader, when sending failed
    if failure is not None:
        raise failure


async def _read_ahead(
    reading: AsyncGenerator[Step[T], None], ahead: ObjectSendStream[Step[T] | Exception]
) -> None:
    async with ahead:
        while True:
            try:
                step: Step[T] | Exception = await anext(reading)
            except StopAsyncIteration:
                return
            except Exception as exc:  # handed over after the steps read before it
                step = exc
            await ahead.send(step)
            if isinstance(step, Exception):
                return


async def _send_steps(
    taken: ObjectReceiveStream[Step[T] | Exception],
    send: ObjectSendStream[Chunk[R]],
    each: Callable[[Chunk[T]], Chunk[R]],
) -> None:
    async for step in taken:
        if isinstance(step, Exception):
            raise step
        for chunk in step.chunks:
            await send.send(each(chunk))
