"""Generate the quickstart's input, ``examples/data/orders.jsonl``.

The output is deterministic (a fixed seed) and committed; rerun this only to
change it: ``python examples/make_orders.py``. Among 10,000 good orders it
puts a few JSON-valid but invalid orders (``INVALID``) and a few lines that
are not JSON at all (``MALFORMED``), so the quickstart has something to
dead-letter.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SEED = 20240501
GOOD_ORDERS = 10_000
OUTPUT = Path(__file__).parent / "data" / "orders.jsonl"

_SPELLINGS = {
    "DE": ["DE", "de", "Germany", " germany", "Deutschland"],
    "FR": ["FR", "fr", "France"],
    "GB": ["GB", "UK", "United Kingdom"],
    "US": ["US", "USA", "united states"],
    "NL": ["NL", "Netherlands"],
    "ES": ["ES", "Spain"],
    "IT": ["IT", "Italy"],
    "SE": ["SE", "sweden"],
    "PL": ["PL", "Poland "],
    "JP": ["JP", "Japan"],
}

#: Orders that are valid JSON but fail validation: (field changes, reason).
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"quantity": -2}, "quantity must be a positive integer, got -2"),
    ({"customer": None}, "customer is missing"),
    ({"unit_price": "twelve"}, "unit_price must be a number, got 'twelve'"),
    ({"country": "Atlantis"}, "unknown country 'Atlantis'"),
    (
        {"ordered_at": "yesterday"},
        "ordered_at must be an ISO 8601 time with a UTC offset, got 'yesterday'",
    ),
]

#: Lines that are not JSON.
MALFORMED = [
    '{"order_id": "ORD-X1", "customer": "C00017", "quantity": 2',
    '{"order_id": "ORD-X2",, "quantity": 1}',
    "order ORD-X3 for customer C00018",
    "{'order_id': 'ORD-X4', 'quantity': 1}",
    '{"order_id": "ORD-X5", "quantity": 1,}',
    '{"order_id": "ORD-X6" "quantity": 3}',
    '{"order_id": "ORD-X7", "note": "unterminated}',
]


@dataclass(frozen=True, slots=True)
class Orders:
    """The generated file's lines, and which of them are bad.

    :param invalid: order id → the validation error's message (after ``order <id>: ``).
    :param malformed: the lines that are not JSON, in file order.
    """

    lines: list[str]
    invalid: dict[str, str]
    malformed: list[str]


def generate(seed: int = SEED, good: int = GOOD_ORDERS) -> Orders:
    """The quickstart's input: ``good`` valid orders with the bad ones mixed in."""
    rng = random.Random(seed)
    total = good + len(INVALID) + len(MALFORMED)
    slots = rng.sample(range(total), len(INVALID) + len(MALFORMED))
    invalid_at = dict(zip(slots[: len(INVALID)], INVALID, strict=True))
    malformed_at = dict(zip(slots[len(INVALID) :], MALFORMED, strict=True))
    lines: list[str] = []
    invalid: dict[str, str] = {}
    number = 0
    for index in range(total):
        if index in malformed_at:
            lines.append(malformed_at[index])
            continue
        number += 1
        order = _order(rng, f"ORD-{number:06d}")
        if index in invalid_at:
            changes, reason = invalid_at[index]
            order.update(changes)
            order = {key: value for key, value in order.items() if value is not None}
            invalid[order["order_id"]] = reason
        lines.append(json.dumps(order, ensure_ascii=False, separators=(",", ":")))
    return Orders(lines, invalid, [malformed_at[i] for i in sorted(malformed_at)])


def _order(rng: random.Random, order_id: str) -> dict[str, Any]:
    offset = timezone(timedelta(hours=rng.choice([-5, 0, 0, 1, 2, 9])))
    moment = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(366 * 86400))
    return {
        "order_id": order_id,
        "customer": f"C{rng.randrange(1, 2500):05d}",
        "sku": f"sku-{rng.randrange(1, 400):04d}",
        "quantity": rng.choice([1, 1, 1, 2, 2, 3, 4, 5, 10, 12]),
        "unit_price": round(rng.uniform(0.5, 250.0), 2),
        "country": rng.choice(rng.choice(list(_SPELLINGS.values()))),
        "ordered_at": moment.astimezone(offset).isoformat(),
    }


def main() -> int:
    """Write :data:`OUTPUT`."""
    orders = generate()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("".join(line + "\n" for line in orders.lines), encoding="utf-8")
    print(f"wrote {len(orders.lines)} lines to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
