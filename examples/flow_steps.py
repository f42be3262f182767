"""The steps of ``flow.toml``: files in a work directory, each step reading the last one's.

Every step rewrites its output whole, so running it again gives the same file.
"""

from __future__ import annotations

from collections import defaultdict

import anyio
import orjson


async def extract(*, workdir: str, rows: int = 1000) -> None:
    """Write ``rows`` made-up orders to ``orders.jsonl``: one every ten minutes from 2024-01-01."""
    directory = anyio.Path(workdir)
    await directory.mkdir(parents=True, exist_ok=True)
    lines = [
        orjson.dumps({"id": n, "day": f"2024-01-{1 + n // 144:02d}", "cents": (n * 37) % 1000})
        for n in range(rows)
    ]
    await (directory / "orders.jsonl").write_bytes(b"\n".join(lines) + b"\n")


async def load(*, workdir: str) -> None:
    """Total the orders by day into ``daily.json``."""
    totals: dict[str, int] = defaultdict(int)
    for order in await _orders(workdir):
        totals[str(order["day"])] += int(order["cents"])
    await (anyio.Path(workdir) / "daily.json").write_bytes(
        orjson.dumps(dict(sorted(totals.items())))
    )


async def aggregate(*, workdir: str) -> None:
    """Sum the daily totals into ``summary.json``."""
    daily = orjson.loads(await (anyio.Path(workdir) / "daily.json").read_bytes())
    summary = {"days": len(daily), "cents": sum(daily.values())}
    await (anyio.Path(workdir) / "summary.json").write_bytes(orjson.dumps(summary))


async def audit(*, workdir: str) -> None:
    """Count the orders and check their ids are unique; write ``audit.json``."""
    orders = await _orders(workdir)
    ids = {order["id"] for order in orders}
    if len(ids) != len(orders):
        raise ValueError(f"{len(orders) - len(ids)} duplicate order ids in orders.jsonl")
    await (anyio.Path(workdir) / "audit.json").write_bytes(orjson.dumps({"orders": len(orders)}))


async def _orders(workdir: str) -> list[dict[str, int | str]]:
    raw = await (anyio.Path(workdir) / "orders.jsonl").read_bytes()
    return [orjson.loads(line) for line in raw.splitlines() if line]
