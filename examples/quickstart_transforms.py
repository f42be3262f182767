"""The quickstart's transform: validate an order and enrich it.

Used by ``examples/quickstart.toml`` as
``function = "examples.quickstart_transforms:parse_order"``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

#: Spellings seen in the input, casefolded, mapped to ISO 3166 country codes.
COUNTRIES = {
    "DE": ("de", "deu", "germany", "deutschland"),
    "FR": ("fr", "fra", "france"),
    "GB": ("gb", "uk", "united kingdom", "great britain"),
    "US": ("us", "usa", "united states"),
    "NL": ("nl", "netherlands", "the netherlands"),
    "ES": ("es", "spain", "españa"),
    "IT": ("it", "italy", "italia"),
    "SE": ("se", "sweden"),
    "PL": ("pl", "poland"),
    "JP": ("jp", "japan"),
}
_ALIASES = {alias: code for code, aliases in COUNTRIES.items() for alias in aliases}
_CENT = Decimal("0.01")


def parse_order(record: dict[str, Any]) -> dict[str, Any]:
    """Validate one raw order and return the row to load.

    The row has the order's id, customer, SKU and quantity, the unit price and
    ``total`` (quantity × unit price) rounded half-up to cents, the ISO country
    code, and the order time in UTC.

    :raises ValueError: the order is invalid; the message names the order and the field.
    """
    order_id = record.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        raise ValueError(f"order_id must be a non-empty string, got {order_id!r}")
    customer = record.get("customer")
    if not isinstance(customer, str) or not customer.strip():
        raise ValueError(f"order {order_id}: customer is missing")
    quantity = record.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise ValueError(f"order {order_id}: quantity must be a positive integer, got {quantity!r}")
    unit_price = _price(order_id, record.get("unit_price"))
    return {
        "order_id": order_id,
        "customer": customer.strip(),
        "sku": str(record.get("sku", "")).upper(),
        "quantity": quantity,
        "unit_price": float(unit_price),
        "total": float((unit_price * quantity).quantize(_CENT, rounding=ROUND_HALF_UP)),
        "country": _country(order_id, record.get("country")),
        "ordered_at": _utc(order_id, record.get("ordered_at")),
    }


def _price(order_id: str, value: object) -> Decimal:
    price = _decimal(value)
    if price is None:
        raise ValueError(f"order {order_id}: unit_price must be a number, got {value!r}")
    if price < 0:
        raise ValueError(f"order {order_id}: unit_price must be zero or more, got {value!r}")
    return price.quantize(_CENT, rounding=ROUND_HALF_UP)


def _decimal(value: object) -> Decimal | None:
    """``value`` as a finite decimal, or ``None`` when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _country(order_id: str, value: object) -> str:
    code = _ALIASES.get(value.strip().casefold()) if isinstance(value, str) else None
    if code is None:
        raise ValueError(f"order {order_id}: unknown country {value!r}")
    return code


def _utc(order_id: str, value: object) -> str:
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(
            f"order {order_id}: ordered_at must be an ISO 8601 time with a UTC offset, "
            f"got {value!r}"
        )
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
