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
from collections.abc import Hashable, Iterable, Sequence
from itertools import repeat
from typing import Generic, TypeVar, cast

from asyncetl.core.batch import Position

__all__ = ["AckLedger"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_GONE = object()


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

    def add_keys(self: AckLedger[K, K], position: Position, keys: list[K]) -> None:
        """Like :meth:`add` for messages whose key is also their handle (a stream entry id);
        ``keys`` is kept as it is, so do not change it afterwards."""
        self._handles.update(zip(keys, keys, strict=True))
        self._chunks.append((position, keys))

    def holds_any(self, keys: Iterable[object]) -> bool:
        """Whether any of ``keys`` was handed out and is not yet taken."""
        return bool(self._handles) and not self._handles.keys().isdisjoint(keys)

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
        pop = self._handles.pop
        while self._chunks:
            pos, keys = self._chunks.popleft()
            # A key already taken (carried again by a later chunk) is skipped.
            handles = [h for h in map(pop, keys, repeat(_GONE)) if h is not _GONE]
            taken += cast("list[V]", handles)
            if pos == position:
                break
        return taken

    def clear(self) -> list[V]:
        """Forget everything; return the handles that were outstanding."""
        handles = list(self._handles.values())
        self._chunks.clear()
        self._handles.clear()
        return handles
