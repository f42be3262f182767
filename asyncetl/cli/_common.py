"""What every command of ``python -m asyncetl`` shares: exit codes, options, signals.

Used by :mod:`asyncetl.cli` and the command modules it imports
(:mod:`asyncetl.cli._backfill`, :mod:`asyncetl.cli._cdc`, :mod:`asyncetl.cli._checkpoint`,
:mod:`asyncetl.cli._dlq`),
so the shared parts cannot live in any one of them.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from asyncetl import ConfigError
from asyncetl.core.logs import LOG_LEVELS

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "confirm",
    "program",
    "spec_options",
    "on_signals",
    "port_number",
    "positive_int",
    "positive_seconds",
    "table_width",
]

#: Success or graceful stop; a runtime failure; a bad spec or arguments; stopped hard.
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def program(command: str = "") -> str:
    """How the user started asyncetl, for usage lines and hints: the ``asyncetl`` script or
    ``python -m asyncetl`` (argparse would say ``__main__.py`` for the latter)."""
    name = "asyncetl" if os.path.basename(sys.argv[0]) == "asyncetl" else "python -m asyncetl"
    return f"{name} {command}" if command else name


def spec_options() -> argparse.ArgumentParser:
    """A parent parser for spec commands: ``--env-file``, ``--log-format``, ``--log-level``."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="FILE",
        help="read KEY=VALUE lines for the spec's ${VAR} references (secrets: never shown, "
        "not exported); may be repeated, later files win, the environment wins over all",
    )
    options.add_argument(
        "--log-format",
        choices=("console", "json"),
        help="log lines for people (console) or machines (json); "
        "default: the spec's [logging] format, else console",
    )
    options.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.lower,
        help="least severe level logged; default: the spec's, else info",
    )
    return options


def positive_int(text: str) -> int:
    """An argument type: a positive integer.

    :raises argparse.ArgumentTypeError: for anything else.
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """An argument type: a positive number of seconds.

    :raises argparse.ArgumentTypeError: for anything else.
    """
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or math.isinf(value):  # `not > 0` also refuses NaN
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def port_number(text: str) -> int:
    """An argument type: a TCP port, 0 (any free port) to 65535.

    :raises argparse.ArgumentTypeError: for anything else.
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


async def on_signals(react: Callable[[str], None], *, task_status: TaskStatus[None]) -> None:
    """Call ``react`` with the name of each SIGINT or SIGTERM received; start with ``tg.start``."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            react(signal.Signals(signum).name)


async def confirm(question: str, *, command: str) -> bool:
    """Whether the person at the terminal answers ``question`` with yes.

    :raises ConfigError: when there is no terminal, naming ``command`` and its ``--yes``.
    """
    if not sys.stdin.isatty():
        raise ConfigError(f"{command} needs --yes when there is no terminal to confirm on")
    answer = await anyio.to_thread.run_sync(input, question)
    return answer.strip().lower() in ("y", "yes")


def table_width() -> int | None:
    """The width of printed tables: the terminal's, else 160 so that piped output is not cut."""
    return None if sys.stdout.isatty() else 160
