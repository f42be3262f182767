"""Watching a running pipeline: the status server and the logging setup.

:func:`serve_status` serves ``/metrics``, ``/health``, ``/ready`` and a live page
for one pipeline (:func:`readiness` says why it is not ready, :func:`read_status`
reads a running one's figures);
:func:`configure_logging` renders asyncetl's structlog events as console or
JSON lines. Neither is started on import: the command line uses both, an
embedding application picks what it wants.
"""

from typing import TYPE_CHECKING, Any

from asyncetl.status._logs import configure_logging as configure_logging

if TYPE_CHECKING:
    from asyncetl.status._server import read_status as read_status
    from asyncetl.status._server import readiness as readiness
    from asyncetl.status._server import serve_status as serve_status
    from asyncetl.status._server import status_app as status_app

__all__ = ["configure_logging", "read_status", "readiness", "serve_status", "status_app"]

_SERVER = frozenset({"read_status", "readiness", "serve_status", "status_app"})


def __getattr__(name: str) -> Any:
    # The server and its HTTP stack load on first use: a command-line run without
    # --status-port, which only needs configure_logging, starts without them.
    if name in _SERVER:
        from asyncetl.status import _server

        return getattr(_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
