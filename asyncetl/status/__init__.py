"""Watching a running pipeline: the status server and the logging setup.

:func:`serve_status` serves ``/metrics``, ``/health``, ``/ready`` and a live page
for one pipeline (:func:`readiness` says why it is not ready, :func:`read_status`
reads a running one's figures);
:func:`configure_logging` renders asyncetl's structlog events as console or
JSON lines. Neither is started on import: the command line uses both, an
embedding application picks what it wants.
"""

from asyncetl.status._logs import configure_logging as configure_logging
from asyncetl.status._server import read_status as read_status
from asyncetl.status._server import readiness as readiness
from asyncetl.status._server import serve_status as serve_status
from asyncetl.status._server import status_app as status_app

__all__ = ["configure_logging", "read_status", "readiness", "serve_status", "status_app"]
