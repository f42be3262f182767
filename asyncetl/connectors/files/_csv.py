"""CSV: a source whose header row names the fields, followed by byte offset."""

from __future__ import annotations

import codecs
import csv
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from itertools import accumulate

from asyncetl.connectors.files._source import FileSource
from asyncetl.connectors.files._tail import resume_offset
from asyncetl.core.batch import Chunk, JsonValue, Position, Reject
from asyncetl.core.errors import CheckpointError, ConfigError, PermanentError

__all__ = ["CsvSource"]

CsvRecord = dict[str, str]


class CsvSource(FileSource[CsvRecord]):
    """Reads a CSV file whose first row is the header; records map header names to strings.

    The position is ``{"path": path, "offset": n}``: the file as given and the
    byte offset just after the last complete row consumed; a resume reads the
    header again, then seeks there. A position written for another path is
    refused (a bare offset, as written before, is taken as before). Quoted fields may
    contain the delimiter, doubled quotes and **newlines**: a row ends at the
    first line end outside quotes, so a quoted field spanning lines is read
    correctly and a row is complete only once its closing quote has arrived.
    (An unbalanced quote therefore makes the rest of the file one incomplete
    row; the end-of-file warning names its byte offset.)

    Rows are parsed strictly: a row with more or fewer fields than the header,
    text after a closing quote, or bytes invalid in ``encoding`` becomes a
    reject carrying the row's text (without its line end). Blank lines are
    skipped. The rules for an incomplete last row, ``follow`` and blocks are
    those of :class:`~asyncetl.connectors.files.JsonlSource`.

    :param path: the file; it must exist when reading starts.
    :param name: the source's name, part of its checkpoint key.
    :param follow: after the end of the file, poll for appended rows forever.
    :param poll_interval: seconds between polls at the end of the file.
    :param delimiter: the one-character field separator.
    :param encoding: an ASCII-compatible encoding (UTF-8, Latin-1, cp1252…).
    :param block_size: bytes read per step.
    :raises ConfigError: for a bad delimiter, an unknown or ASCII-incompatible
        encoding, or a non-positive ``poll_interval`` or ``block_size``.
    """

    def __init__(
        self,
        path: str,
        *,
        name: str = "csv",
        follow: bool = False,
        poll_interval: float = 0.5,
        delimiter: str = ",",
        encoding: str = "utf-8",
        block_size: int = 1 << 20,
    ) -> None:
        super().__init__(
            "CsvSource",
            path,
            name=name,
            follow=follow,
            poll_interval=poll_interval,
            block_size=block_size,
        )
        _check_dialect(f"CsvSource {name}", delimiter, encoding)
        self.delimiter = delimiter
        self.encoding = encoding
        #: The header row, once read; needed by :meth:`decode`.
        self.header: list[str] | None = None

    async def read(self, after: Position, *, max_chunk: int) -> AsyncIterator[Chunk[CsvRecord]]:
        """Yield chunks of up to ``max_chunk`` rows, starting strictly after byte ``after``.

        :raises ConfigError: when ``after`` is not a position into this file.
        :raises CheckpointError: when it lies inside the header row.
        :raises PermanentError: when the file is missing or unreadable, its
            header is broken, or it was truncated or changed under the position.
        """
        start = resume_offset(self.path, after, where=self._where)
        header_end = await self._read_header()
        if header_end is None:
            return
        if start and start < header_end:
            raise CheckpointError(
                f"the committed position {start} of {self.path} lies inside its header row; "
                "delete the checkpoint to start over"
            )
        parse = partial(self._parse_rows, max_chunk=max(1, max_chunk))
        async with aclosing(self._read_from(start or header_end, parse, unit="row")) as chunks:
            async for chunk in chunks:
                yield chunk

    def decode(self, raw: JsonValue) -> CsvRecord:
        """Parse a dead-lettered row text again, with the header read last.

        :raises ValueError: when the header is not known yet or the row is still bad.
        :raises TypeError: when ``raw`` is not a row's text.
        """
        if self.header is None:
            raise ValueError(f"the header of {self.path} is not known yet; read the file first")
        if not isinstance(raw, str):
            raise TypeError(f"a CSV dead letter holds the row's text, not {type(raw).__name__}")
        try:
            rows = list(csv.reader([raw], delimiter=self.delimiter, strict=True))
        except csv.Error as exc:
            raise ValueError(f"the row is not valid CSV: {exc}") from exc
        fields = rows[0] if len(rows) == 1 else []
        if len(fields) != len(self.header):
            raise ValueError(f"the row has {len(fields)} fields, the header has {len(self.header)}")
        return dict(zip(self.header, fields, strict=True))

    async def _read_header(self) -> int | None:
        """Read the header row into :attr:`header`; return its end offset (``None``: none yet)."""
        rows = self._tail(0, self._parse_header, unit="header row")
        async with aclosing(rows) as iterator:
            async for chunk in iterator:
                self.header = list(chunk.records[0])
                assert isinstance(chunk.position, int)
                return chunk.position
        return None

    def _parse_header(
        self, buffer: bytes, offset: int, at_end: bool
    ) -> tuple[list[Chunk[list[str]]], int]:
        rows, _ = scan_rows(buffer, encoding=self.encoding, delimiter=self.delimiter)
        for row in rows:
            if row.error is not None:
                raise PermanentError(
                    f"the header row of {self.path} is not valid CSV: {row.error}; fix the file"
                )
            if row.fields:
                _check_header(self.path, row.fields)
                return [Chunk([row.fields], offset + row.end)], row.end
        return [], rows[-1].end if rows else 0

    def _parse_rows(
        self, buffer: bytes, offset: int, at_end: bool, *, max_chunk: int
    ) -> tuple[list[Chunk[CsvRecord]], int]:
        assert self.header is not None
        header, width = self.header, len(self.header)
        rows, consumed = scan_rows(buffer, encoding=self.encoding, delimiter=self.delimiter)
        whole = len(rows) - len(rows) % max_chunk
        if not at_end and whole and whole < len(rows):
            # The rows past the last whole chunk wait for the next block (see _tail).
            consumed = rows[whole - 1].end
            del rows[whole:]
        chunks: list[Chunk[CsvRecord]] = []
        for first in range(0, len(rows), max_chunk):
            part = rows[first : first + max_chunk]
            records: list[CsvRecord] = []
            rejects: list[Reject] = []
            for row in part:
                fields = row.fields
                if fields is not None and len(fields) == width:
                    records.append(dict(zip(header, fields, strict=True)))
                elif fields != []:  # a blank line parses as [] and is skipped
                    rejects.append(self._reject(buffer, offset, row, width))
            chunks.append(Chunk(records, offset + part[-1].end, rejects))
        return chunks, consumed

    def _reject(self, buffer: bytes, offset: int, row: _Row, width: int) -> Reject:
        text = buffer[row.start : row.end].decode(self.encoding, "backslashreplace")
        text = text.removesuffix("\n").removesuffix("\r")
        where = f"row at byte {offset + row.start} of {self.path}"
        if row.error is not None:
            return Reject(text, ValueError(f"{where} is not valid CSV: {row.error}"))
        count = len(row.fields or ())
        return Reject(text, ValueError(f"{where} has {count} fields, the header has {width}"))


@dataclass(frozen=True, slots=True)
class _Row:
    """One parsed row: its fields (``None`` when it is broken) and its byte span."""

    fields: list[str] | None
    start: int
    end: int
    error: Exception | None = None


class _Feed:
    """Hands lines to ``csv.reader``, counting them and noticing when it asks past the end."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = texts
        self.taken = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.taken == len(self.texts):
            self.exhausted = True
            raise StopIteration
        self.taken += 1
        return self.texts[self.taken - 1]


def scan_rows(buffer: bytes, *, encoding: str, delimiter: str) -> tuple[list[_Row], int]:
    """The complete rows at the start of ``buffer``, and how many bytes they span.

    A row still inside a quoted field at the end of the buffer is incomplete:
    it is left out, and the bytes consumed stop where it starts.
    """
    end = buffer.rfind(b"\n") + 1
    pieces = buffer[:end].splitlines(keepends=True)
    bounds = list(accumulate(map(len, pieces), initial=0))
    texts, undecodable = _decode_lines(pieces, encoding)
    feed = _Feed(texts)
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    rows: list[_Row] = []
    first = 0  # the line the current row starts on
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if feed.exhausted:
                break  # the row goes on past the buffer
            rows.append(_Row(None, bounds[first], bounds[feed.taken], exc))
        else:
            error = _bad_bytes(undecodable, first, feed.taken, encoding)
            rows.append(_Row(None if error else fields, bounds[first], bounds[feed.taken], error))
        first = feed.taken
    return rows, bounds[first]


def _decode_lines(pieces: list[bytes], encoding: str) -> tuple[list[str], set[int]]:
    try:
        return [piece.decode(encoding) for piece in pieces], set()
    except UnicodeDecodeError:
        pass
    texts: list[str] = []
    undecodable: set[int] = set()
    for index, piece in enumerate(pieces):
        try:
            texts.append(piece.decode(encoding))
        except UnicodeDecodeError:
            texts.append(piece.decode(encoding, "replace"))
            undecodable.add(index)
    return texts, undecodable


def _bad_bytes(undecodable: set[int], first: int, last: int, encoding: str) -> Exception | None:
    if undecodable and any(index in undecodable for index in range(first, last)):
        return ValueError(f"it holds bytes that are not valid {encoding}")
    return None


def _check_header(path: str, header: list[str]) -> None:
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise PermanentError(
                f"the header row of {path} repeats column {column!r}; "
                "give each column a unique name"
            )
        seen.add(column)


def _check_dialect(where: str, delimiter: str, encoding: str) -> None:
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise ConfigError(
            f"must be one character other than a quote or a line end, not {delimiter!r}",
            where=where,
            key="delimiter",
        )
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ConfigError(
            f"{encoding!r} is not a known encoding", where=where, key="encoding"
        ) from None
    if '\n,"'.encode(encoding, "replace") != b'\n,"':
        raise ConfigError(
            f"{encoding!r} is not ASCII-compatible; convert the file to UTF-8",
            where=where,
            key="encoding",
        )
