"""Logging setup for applications and the CLI.

asyncetl's own modules log through :func:`asyncetl.core.logs.get_logger`: to the
standard library's :mod:`logging` until structlog is configured, through structlog
after. Nothing is configured on import. An application configures :mod:`logging`,
or structlog itself, or calls :func:`configure_logging` once at start-up.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import orjson
import structlog
from rich.console import Console
from rich.traceback import Trace, Traceback
from structlog.typing import EventDict, ExcInfo

from asyncetl.core.errors import ConfigError
from asyncetl.core.logs import LEVELS, LogFormat
from asyncetl.core.redact import redact, redact_values

__all__ = ["configure_logging"]


def configure_logging(format: LogFormat = "console", level: str = "info") -> None:
    """Send structlog output to stderr as console lines or JSON lines.

    :param format: ``console`` (aligned, coloured on a terminal) or ``json`` (one
        JSON object per line, rendered with orjson).
    :param level: the least severe level shown: ``debug``, ``info``, ``warning``,
        ``error`` or ``critical``.
    :raises ConfigError: an unknown format or level.
    """
    threshold = LEVELS.get(level.lower())
    if threshold is None:
        raise ConfigError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if format == "json":
        processors = [
            *shared,
            # Tracebacks without local variables: a frame may hold a DSN with its password.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            _without_secrets,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
        factory: Any = structlog.BytesLoggerFactory(sys.stderr.buffer)
    elif format == "console":
        colors = sys.stderr.isatty()
        renderer = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=_traceback)
        processors = [*shared, _without_secrets, renderer]
        factory = structlog.PrintLoggerFactory(sys.stderr)
    else:
        raise ConfigError(f"unknown log format {format!r}; use 'console' or 'json'")
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=factory,
        # Not cached: a later configure_logging call must reach module-level loggers too.
        cache_logger_on_first_use=False,
    )


def _without_secrets(_logger: object, _method: str, event: EventDict) -> EventDict:
    """Every string in the event, exception messages included, without remembered
    secrets (env files, secret files) and URL passwords."""
    return {key: redact_values(value) for key, value in event.items()}


def _traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    """Rich's traceback as structlog draws it by default, but without local variables
    (a frame may hold a DSN with its password) and with secrets hidden in the
    exception messages it quotes (hidden before rich colours the URL apart)."""
    trace = Traceback.extract(*exc_info, show_locals=False)
    _redact_trace(trace)
    sio.write("\n")
    drawn = Traceback(trace, width=None, word_wrap=True)
    Console(file=sio, color_system="truecolor", width=None).print(drawn)


def _redact_trace(trace: Trace) -> None:
    for stack in trace.stacks:
        stack.exc_value = redact(stack.exc_value)
        stack.notes = [redact(note) for note in stack.notes]
        for group_member in stack.exceptions:
            _redact_trace(group_member)
