"""The low watermark over acknowledged batches."""

from __future__ import annotations

from asyncetl.core.batch import Position

__all__ = ["Watermark"]


class Watermark:
    """Tracks which batches are acknowledged and the position safe to commit.

    Batches are registered in sequence order as they leave the source; acks may
    arrive in any order. The committable position is that of the highest
    sequence number such that it and every lower one are acknowledged: it never
    moves backwards and never passes an unacknowledged batch.

    :param start: the position resumed from (``None`` when starting fresh).
    """

    def __init__(self, start: Position = None) -> None:
        self._positions: dict[int, Position] = {}
        self._acked: set[int] = set()
        self._next_seq = 0
        self._low = 0  # lowest sequence number not yet folded into the watermark
        self.position: Position = start

    @property
    def pending(self) -> int:
        """How many registered batches are not yet folded into the watermark."""
        return self._next_seq - self._low

    def register(self, seq: int, position: Position) -> None:
        """Record that batch ``seq`` ends at ``position``; sequence numbers must be consecutive."""
        if seq != self._next_seq:
            raise ValueError(f"batch {seq} registered out of order; expected {self._next_seq}")
        self._positions[seq] = position
        self._next_seq += 1

    def peek_ack(self, seq: int) -> Position:
        """The watermark position there would be if ``seq`` were acknowledged now."""
        self._check_known(seq)
        position = self.position
        low = self._low
        while low < self._next_seq and (low == seq or low in self._acked):
            position = self._positions[low]
            low += 1
        return position

    def ack(self, seq: int) -> bool:
        """Acknowledge batch ``seq``; return whether the watermark moved."""
        self._check_known(seq)
        self._acked.add(seq)
        moved = False
        while self._low in self._acked:
            self._acked.discard(self._low)
            self.position = self._positions.pop(self._low)
            self._low += 1
            moved = True
        return moved

    def _check_known(self, seq: int) -> None:
        if not self._low <= seq < self._next_seq or seq in self._acked:
            raise ValueError(f"batch {seq} is not awaiting acknowledgement")
