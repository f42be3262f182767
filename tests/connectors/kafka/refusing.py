"""A transform for the replay tests: refuses orders of a negative quantity until told not to."""

from __future__ import annotations

import os

from asyncetl.core.changes import ChangeEvent

#: Set (to anything) to accept every order, as a fixed transform would.
ACCEPT_VARIABLE = "ASYNCETL_TEST_ACCEPT_NEGATIVE"


def check_quantity(event: ChangeEvent) -> ChangeEvent:
    """``event``, unless its row's ``qty`` is negative and the variable is unset."""
    qty = (event.after or {}).get("qty")
    if isinstance(qty, int) and qty < 0 and not os.environ.get(ACCEPT_VARIABLE):
        raise ValueError(f"qty {qty} is negative")
    return event
