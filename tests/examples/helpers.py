"""Running the shipped example specs as their comments tell users to, from the repository root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from examples.make_orders import MALFORMED, Orders
from examples.quickstart_transforms import parse_order

REPO = Path(__file__).resolve().parents[2]


def run_example(spec: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m asyncetl ARGS SPEC`` in the repository root, with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", "asyncetl", *args, spec],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def loaded_orders(orders: Orders) -> list[dict[str, Any]]:
    """The orders a quickstart loads (neither malformed nor invalid), parsed, by order id."""
    good = [
        parse_order(json.loads(line))
        for line in orders.lines
        if line not in MALFORMED and json.loads(line)["order_id"] not in orders.invalid
    ]
    return sorted(good, key=lambda row: row["order_id"])
