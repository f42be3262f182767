"""Logging setup for applications and the CLI.

asyncetl's own modules log through :func:`asyncetl.core.logs.get_logger`: to the
standard library's :mod:`logging` until structlog is configured, through structlog
after. Nothing is configured on import. An application configures :mod:`logging`,
or structlog itself, or calls :func:`configure_logging` once at start-up.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import structlog

from asyncetl.core.errors import ConfigError
from asyncetl.core.logs import LEVELS, LogFormat

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
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
        factory: Any = structlog.BytesLoggerFactory(sys.stderr.buffer)
    elif format == "console":
        colors = sys.stderr.isatty()
        # Rich's tracebacks as before, but without local variables (see the JSON case).
        tracebacks = structlog.dev.RichTracebackFormatter(show_locals=False)
        renderer = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=tracebacks)
        processors = [*shared, renderer]
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
