"""The HTTP example's transform: an API record as a row ``(id, doc)``.

Used by ``examples/http_to_pg.toml`` as
``function = "examples.http_to_pg_transforms:to_row"``.
"""

from __future__ import annotations

from typing import Any


def to_row(record: dict[str, Any]) -> dict[str, Any]:
    """``{"id": <the record's integer id>, "doc": <the whole record>}``.

    :raises TypeError: when the record has no integer ``id``.
    """
    record_id = record.get("id")
    if isinstance(record_id, bool) or not isinstance(record_id, int):
        raise TypeError(f"record has no integer id: id = {record_id!r}")
    return {"id": record_id, "doc": record}
