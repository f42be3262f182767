"""Which upstream messages each handed-out position covers, until the engine acknowledges it.

A source with an upstream acknowledgement (a Redis Streams ``XACK``, a
JetStream ack) hands the engine one position per chunk, and later learns
through :meth:`~asyncetl.core.interfaces.Source.acknowledge` that everything up
to some position is committed. :class:`AckLedger` keeps the map between the two:
each handed-out position with the keys of the messages its chunk carried, and
each key's handle (what the upstream ack needs: an entry id, a message object).
It knows nothing about any client library, so every such source shares it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

from asyncetl.core.batch import Position

__all__ = ["AckLedger"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class AckLedger(Generic[K, V]):
    """Positions handed out in order, each with the upstream handles it covers.

    ``K`` identifies a message (a stream entry id, a stream sequence) and ``V``
    is what acknowledging it takes; the two may be the same value.

    The engine acknowledges the low watermark: a position meaning "this chunk and
    every earlier one is committed". :meth:`take_through` therefore pops every
    chunk up to and including that position and returns their handles, so that
    exactly the committed entries are acknowledged upstream. Memory is bounded by
    what is in flight in the pipeline.
    """

    def __init__(self) -> None:
        self._chunks: deque[tuple[Position, list[K]]] = deque()
        self._handles: dict[K, V] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._handles

    def __len__(self) -> int:
        return len(self._handles)

    def add(self, position: Position, items: Sequence[tuple[K, V]]) -> None:
        """Note that the chunk ending at ``position`` carried ``items`` (key, handle)."""
        for key, handle in items:
            self._handles[key] = handle
        self._chunks.append((position, [key for key, _ in items]))

    def refresh(self, key: K, handle: V) -> None:
        """Replace the handle of an entry delivered again while still outstanding."""
        if key in self._handles:
            self._handles[key] = handle

    def take_through(self, position: Position) -> list[V]:
        """Remove and return the handles of every chunk up to and including ``position``.

        A position this ledger never handed out (or already took) takes nothing.
        """
        if not any(pos == position for pos, _ in self._chunks):
            return []
        taken: list[V] = []
        while self._chunks:
            pos, keys = self._chunks.popleft()
            taken.extend(self._handles.pop(key) for key in keys if key in self._handles)
            if pos == position:
                break
        return taken

    def clear(self) -> list[V]:
        """Forget everything; return the handles that were outstanding."""
        handles = list(self._handles.values())
        self._chunks.clear()
        self._handles.clear()
        return handles
