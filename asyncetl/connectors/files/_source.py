"""What the file sources share: their reading options, check, progress, positions, read loop."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import TypeVar

from asyncetl.connectors.files._check import readable
from asyncetl.connectors.files._tail import (
    FileProgress,
    Parse,
    check_options,
    named,
    resume_offset,
    tail,
)
from asyncetl.core.batch import Chunk, Position
from asyncetl.core.interfaces import Problem, Source
from asyncetl.core.observe import Progress

__all__ = ["FileSource"]

R = TypeVar("R")
T = TypeVar("T")


class FileSource(Source[R]):
    """A source reading one file by byte offset, whose positions name the file.

    :param kind: the class's name, for messages, e.g. ``JsonlSource``.
    :raises ConfigError: for a non-positive ``poll_interval`` or ``block_size``.
    """

    #: The most bytes the source's parser may take on the event loop (see :func:`tail`):
    #: none unless a subclass says its parser is that cheap.
    _parse_on_loop = 0

    def __init__(
        self,
        kind: str,
        path: str,
        *,
        name: str,
        follow: bool,
        poll_interval: float,
        block_size: int,
    ) -> None:
        check_options(f"{kind} {name}", poll_interval=poll_interval, block_size=block_size)
        self.path = str(path)
        self.name = name
        self.follow = follow
        self.poll_interval = poll_interval
        self.block_size = block_size
        self._progress = FileProgress()

    async def check(self) -> list[Problem]:
        """Whether the file exists and is readable (with ``follow`` too: reading opens it)."""
        return await readable(self.path)

    def progress(self) -> Sequence[Progress]:
        """Bytes read of the file's size when reading started (no total with ``follow``)."""
        return self._progress.progress()

    def check_position(self, position: Position) -> None:
        """Refuse a position written for another file, or one that is no byte offset.

        :raises ConfigError: naming both files and how to reset the checkpoint.
        """
        resume_offset(self.path, position, where=self._where)

    @property
    def _where(self) -> str:
        return f"{type(self).__name__} {self.name!r}"

    def _tail(self, start: int, parse: Parse[T], *, unit: str) -> AsyncGenerator[Chunk[T], None]:
        """:func:`tail` of the file from ``start``, with this source's options."""
        return tail(
            self.path,
            start,
            parse,
            follow=self.follow,
            poll_interval=self.poll_interval,
            block_size=self.block_size,
            unit=unit,
            parse_on_loop=self._parse_on_loop,
        )

    async def _read_from(
        self, start: int, parse: Parse[R], *, unit: str
    ) -> AsyncGenerator[Chunk[R], None]:
        """The chunks after byte ``start``, counted in :meth:`progress`, positions naming
        the file."""
        await self._progress.start(self.path, start, follow=self.follow)
        async with aclosing(self._tail(start, parse, unit=unit)) as iterator:
            async for chunk in iterator:
                self._progress.report(chunk)
                yield named(chunk, self.path)
