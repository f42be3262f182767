"""The words of asyncetl's logging: level names and output formats.

The engine and the connectors only ever call ``structlog.get_logger``; how the
lines are rendered is decided above them (:func:`asyncetl.status.configure_logging`,
or the embedding application). The vocabulary lives here so that the spec
layer can check a ``[logging]`` table without importing the layer that renders.
"""

from __future__ import annotations

import logging
from typing import Literal, TypeAlias

__all__ = ["LEVELS", "LOG_LEVELS", "LogFormat"]

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
