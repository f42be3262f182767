"""asyncetl's loggers, and the words of its logging: level names and output formats.

Every asyncetl module logs through :func:`get_logger`. How the lines are
rendered is decided above the engine: when structlog is configured (by
:func:`asyncetl.status.configure_logging`, as the command line does, or by the
embedding application), events go through that configuration; otherwise they
go to the standard library's :mod:`logging` under the same name
(``asyncetl.…``), so an application that configures nothing sees nothing on
stdout, and one that configures :mod:`logging` gets asyncetl's events there.
The vocabulary lives here so that the spec layer can check a ``[logging]``
table without importing the layer that renders.
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType
from typing import Any, Literal, TypeAlias

from asyncetl.core.redact import redact_values

__all__ = ["LEVELS", "LOG_LEVELS", "LogFormat", "Logger", "get_logger"]

#: ``console`` (aligned, coloured on a terminal) or ``json`` (one object per line).
LogFormat: TypeAlias = Literal["console", "json"]

#: Level name → the standard library's level number.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
#: The level names :func:`asyncetl.status.configure_logging` accepts.
LOG_LEVELS = tuple(LEVELS)


def get_logger(name: str) -> Logger:
    """The logger ``name`` (``asyncetl.<part>``): structlog's when configured, else stdlib's.

    The choice is made at every call, so a logger made at import time follows a
    configuration made later.
    """
    return Logger(name, {})


class Logger:
    """A structlog-style logger (``log.info("event", key=value)``) that picks its output late.

    :param context: key-value pairs added to every event, as ``bind`` adds them.
    """

    __slots__ = ("_context", "_name")

    def __init__(self, name: str, context: dict[str, Any]) -> None:
        self._name = name
        self._context = context

    def bind(self, **values: Any) -> Logger:
        """This logger with ``values`` added to every event."""
        return Logger(self._name, {**self._context, **values})

    def debug(self, event: str, **values: Any) -> None:
        """Log ``event`` at debug level."""
        self._log(logging.DEBUG, "debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        """Log ``event`` at info level."""
        self._log(logging.INFO, "info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        """Log ``event`` at warning level."""
        self._log(logging.WARNING, "warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        """Log ``event`` at error level."""
        self._log(logging.ERROR, "error", event, values)

    def critical(self, event: str, **values: Any) -> None:
        """Log ``event`` at critical level."""
        self._log(logging.CRITICAL, "critical", event, values)

    def _log(self, level: int, method: str, event: str, values: dict[str, Any]) -> None:
        structlog = _structlog()
        if structlog is not None and structlog.is_configured():
            logger = structlog.get_logger(self._name)
            getattr(logger, method)(event, **{**self._context, **values})
            return
        stdlib = logging.getLogger(self._name)
        if not stdlib.isEnabledFor(level):
            return
        exc_info = values.pop("exc_info", None)
        bound: dict[str, Any] = (
            structlog.contextvars.get_contextvars() if structlog is not None else {}
        )
        fields = {**bound, **self._context, **values}
        fields = redact_values(fields)  # a value may quote a DSN
        text = " ".join([event, *(f"{key}={value!r}" for key, value in fields.items())])
        stdlib.log(level, text, exc_info=exc_info, extra={"asyncetl": fields}, stacklevel=3)


def _structlog() -> ModuleType | None:
    """structlog, once anything imported it: before that it holds no configuration or context.

    Not imported here: with rich installed, importing structlog costs an
    embedding application about 60 ms and 14 MiB that it may never use.
    """
    return sys.modules.get("structlog")
