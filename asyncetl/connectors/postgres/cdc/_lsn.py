"""PostgreSQL log sequence numbers (LSNs) as text: ``X/Y``, two hex numbers.

Inside asyncetl an LSN is an integer (:attr:`~asyncetl.core.changes.ChangeEvent.lsn`,
as Debezium's ``source.lsn``). PostgreSQL writes it as text, and so do CDC
positions in checkpoints (``{"lsn": "0/16B3748", …}``): that text is PostgreSQL's
business, so it is read and written here, not in core.
"""

from __future__ import annotations

from asyncetl.core.errors import ConfigError

__all__ = ["format_lsn", "parse_lsn"]


def parse_lsn(text: str | int) -> int:
    """An LSN as an integer, from ``X/Y`` hex text (or an integer, returned as is).

    :raises ConfigError: when ``text`` is not an LSN.
    """
    if isinstance(text, int):
        return text
    high, sep, low = text.partition("/")
    try:
        return (int(high, 16) << 32) | int(low, 16) if sep else int("not an lsn")
    except ValueError:
        raise ConfigError(
            f"{text!r} is not an LSN; write it as two hex numbers like '0/16B3748'"
        ) from None


def format_lsn(lsn: int) -> str:
    """An integer LSN as PostgreSQL writes it: ``X/Y`` in upper-case hex."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
