"""A tiny local JSON API that pages like json-server, so the HTTP example runs offline.

    python examples/demo_api.py --port 8080 --records 1000

Endpoints (``updated_at_gte=<ISO time>`` filters both):

- ``GET /records?_page=2&_limit=100`` -> a JSON array, with ``X-Total-Count`` and
  ``Link: <...>; rel="next"`` (also ``first``, ``prev``, ``last``) headers;
  ``GET /records?_start=200&_limit=100`` pages by offset instead.
- ``GET /feed?_limit=100&_cursor=...`` -> ``{"data": [...], "next_cursor": "..."}``,
  ``next_cursor`` being ``null`` on the last page.

Used by ``examples/http_to_pg.toml``; :func:`create_app` is also what its test serves.
"""

from __future__ import annotations

import argparse
import base64
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

Record = dict[str, Any]

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_MAX_LIMIT = 1000


def make_records(count: int) -> list[Record]:
    """``count`` sample records with ids 1..count, one minute apart in ``updated_at``."""
    return [
        {
            "id": i,
            "name": f"item {i}",
            "price": round(i * 1.25, 2),
            "tags": ["even" if i % 2 == 0 else "odd"],
            "updated_at": (_EPOCH + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
        }
        for i in range(1, count + 1)
    ]


def create_app(records: list[Record]) -> web.Application:
    """The demo API over ``records`` (served in list order)."""
    app = web.Application()
    app.router.add_get("/records", _records_handler(records))
    app.router.add_get("/feed", _feed_handler(records))
    return app


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise web.HTTPBadRequest(text=f"{name} must be a non-negative integer, not {raw!r}")
    return int(raw)


def _filtered(request: web.Request, records: list[Record]) -> list[Record]:
    since = request.query.get("updated_at_gte")
    if not since:
        return records
    try:
        bound = datetime.fromisoformat(since)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f"updated_at_gte must be an ISO time, not {since!r}"
        ) from None
    return [r for r in records if datetime.fromisoformat(r["updated_at"]) >= bound]


def _records_handler(records: list[Record]) -> Any:
    async def handle(request: web.Request) -> web.Response:
        rows = _filtered(request, records)
        limit = min(_int(request, "_limit", 10), _MAX_LIMIT) or 10
        headers = {"X-Total-Count": str(len(rows))}
        if "_page" in request.query:
            page = max(_int(request, "_page", 1), 1)
            start = (page - 1) * limit
            headers["Link"] = _links(request, page, max(1, math.ceil(len(rows) / limit)))
        else:
            start = _int(request, "_start", 0)
        return web.json_response(rows[start : start + limit], headers=headers)

    return handle


def _links(request: web.Request, page: int, last: int) -> str:
    def link(number: int, rel: str) -> str:
        return f'<{request.url.update_query(_page=str(number))}>; rel="{rel}"'

    parts = [link(1, "first")]
    if page > 1:
        parts.append(link(page - 1, "prev"))
    if page < last:
        parts.append(link(page + 1, "next"))
    parts.append(link(last, "last"))
    return ", ".join(parts)


def _feed_handler(records: list[Record]) -> Any:
    async def handle(request: web.Request) -> web.Response:
        rows = _filtered(request, records)
        limit = min(_int(request, "_limit", 10), _MAX_LIMIT) or 10
        start = _decode_cursor(request.query.get("_cursor"))
        end = start + limit
        cursor = _encode_cursor(end) if end < len(rows) else None
        return web.json_response({"data": rows[start:end], "next_cursor": cursor})

    return handle


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"at:{index}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        return int(text.removeprefix("at:"))
    except ValueError:
        raise web.HTTPBadRequest(text=f"unknown cursor {cursor!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()
    web.run_app(create_app(make_records(args.records)), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
