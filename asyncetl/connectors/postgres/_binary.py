"""Pages of rows in COPY's binary format, passed from one PostgreSQL database to another.

``COPY (SELECT …) TO STDOUT (FORMAT binary)`` prints every value with its
type's send function and ``COPY … FROM STDIN (FORMAT binary)`` reads it with
the receive function: nothing is printed as text, parsed back or decoded in
Python, so every value arrives exactly and both servers do the least work. It
takes identical column types on both sides (a binary value carries no type),
and types every database has under the same OID (an array or a composite
names its element types by OID): the built-in ones. :func:`binary_refusal`
tells a table whose columns are not all so.

A page is what one ``COPY … TO`` printed, stripped of its header and trailer:
whole rows, so pages concatenate. :func:`binary_data` frames them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from asyncetl.connectors.postgres._sql import TableName
from asyncetl.connectors.postgres.schema import TableSchema
from asyncetl.core.errors import PermanentError

__all__ = [
    "HEADER",
    "TRAILER",
    "BinaryPage",
    "binary_data",
    "binary_refusal",
    "check_binary_types",
    "distinct_pages",
    "page_of",
]

#: The signature, the flags (no OIDs) and an empty header extension.
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
_SIGNATURE = HEADER[:11]
#: The signature, the flags and the length of the header extension that follows.
_FIXED_HEADER = 19
#: Below it, an OID is the same built-in type in every database (FirstNormalObjectId).
_FIRST_USER_OID = 16384

#: The columns of ``$1`` among ``$2`` whose type (or array element) is not built
#: in, or has no binary send or receive function.
_NOT_BINARY = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE a.attrelid = $1::regclass AND a.attname = ANY($2::text[])
  AND (a.atttypid >= $3 OR t.typsend::oid = 0 OR t.typreceive::oid = 0
       OR e.typsend::oid = 0 OR e.typreceive::oid = 0)
ORDER BY a.attnum
"""


class BinaryPage:
    """Whole rows in COPY's binary format, without header and trailer.

    A source yields a page as ``rows`` records that are all this one object,
    so that every row counts (batch sizes, records read and written) while the
    bytes travel once; a sink writes each distinct page once (:func:`distinct_pages`).
    """

    __slots__ = ("data", "rows")

    def __init__(self, data: bytes, rows: int) -> None:
        self.data = data
        self.rows = rows

    def __repr__(self) -> str:
        return f"BinaryPage({self.rows} rows, {len(self.data)} bytes)"


def page_of(output: bytes | Sequence[bytes | bytearray], rows: int) -> BinaryPage:
    """The page of ``rows`` rows that one ``COPY … TO STDOUT (FORMAT binary)`` printed,
    whole or in the parts it arrived in.

    Parts are joined once, header and trailer left out as they are joined: a page is
    not copied a second time to cut them off.

    :raises PermanentError: when ``output`` is not framed as COPY's binary format.
    """
    parts = [output] if isinstance(output, bytes) else list(output)
    if len(parts) != 1 and (
        not parts or len(parts[0]) < _FIXED_HEADER or len(parts[-1]) < len(TRAILER)
    ):
        parts = [b"".join(parts)]  # none, or a frame cut across parts
    first, last = parts[0], parts[-1]
    if not first.startswith(_SIGNATURE) or not last.endswith(TRAILER):
        raise PermanentError("COPY TO printed no binary COPY data; the server is not PostgreSQL")
    start = _FIXED_HEADER + int.from_bytes(first[15:_FIXED_HEADER], "big")
    if len(parts) == 1:
        return BinaryPage(bytes(first[start : -len(TRAILER)]), rows)
    if len(first) < start:  # a header extension past the first part
        return page_of(b"".join(parts), rows)
    return BinaryPage(b"".join([first[start:], *parts[1:-1], last[: -len(TRAILER)]]), rows)


def binary_data(pages: Iterable[BinaryPage]) -> bytes:
    """COPY's binary format holding every row of ``pages``, in order."""
    return b"".join([HEADER, *(page.data for page in pages), TRAILER])


def distinct_pages(records: Sequence[object]) -> list[BinaryPage]:
    """Each page among ``records`` once, in order (a page is one record per row).

    :raises PermanentError: for a record that is not a page: a transform changed them.
    """
    pages = list(dict.fromkeys(records))  # by identity: a page has no __eq__
    if not all(isinstance(page, BinaryPage) for page in pages):
        raise PermanentError(
            'rows read with format = "binary" are pages of COPY data, which a transform '
            'cannot change; read with format = "records" to transform rows'
        )
    return pages  # type: ignore[return-value]


async def binary_refusal(
    conn: asyncpg.Connection, table: TableName, columns: Sequence[str]
) -> str | None:
    """Why ``columns`` of ``table`` cannot travel as binary COPY data, or ``None`` if they can."""
    found = await conn.fetch(_NOT_BINARY, table.sql, list(columns), _FIRST_USER_OID)
    if not found:
        return None
    named = ", ".join(f"{name} ({sql_type})" for name, sql_type in found)
    return (
        f"columns {named} of {table} have types that are not built in (or lack a binary "
        "form), whose binary values another database may not read"
    )


def check_binary_types(
    source: TableSchema | None, target: TableSchema, columns: Sequence[str]
) -> None:
    """Refuse to load binary data of ``source``'s ``columns`` into ``target`` unless their
    types are the same.

    :raises PermanentError: naming the columns whose types differ, or the missing source.
    """
    if source is None:
        raise PermanentError(
            f"binary COPY pages for {target.table} need the sink's source_dsn and "
            "source_table, to check that the columns' types are the same"
        )
    differing = []
    for name in columns:
        theirs, ours = source.column(name), target.column(name)
        if theirs is None or ours is None or theirs.type != ours.type:
            differing.append(
                f"{name} ({theirs.type if theirs else 'missing'} in {source.table}, "
                f"{ours.type if ours else 'missing'} in {target.table})"
            )
    if differing:
        raise PermanentError(
            "binary COPY data needs the same column types in source and target, and these "
            f'differ: {", ".join(differing)}; read the source with format = "copy"'
        )
