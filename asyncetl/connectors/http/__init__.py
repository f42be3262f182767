"""HTTP connectors on aiohttp: paginated JSON APIs in, JSON deliveries out.

:class:`HttpSource` pulls records from a paginated API (five pagination styles,
incremental ``since`` reads, parallel pages delivered in order); :class:`HttpSink`
POSTs batches or records with an idempotency key derived from the source
position. Both take their headers, auth, timeouts, retries and limits as one
:class:`ClientSettings` (``client=``, or a spec's ``[source.client]`` table),
pace requests per host, pause every task of a host on ``429``/``503`` with
``Retry-After``, and retry one request at a time.
"""

from asyncetl.connectors.http._client import redact_headers as redact_headers
from asyncetl.connectors.http._client import redact_url as redact_url
from asyncetl.connectors.http._settings import Auth as Auth
from asyncetl.connectors.http._settings import ClientSettings as ClientSettings
from asyncetl.connectors.http._settings import Limits as Limits
from asyncetl.connectors.http._settings import Timeouts as Timeouts
from asyncetl.connectors.http.pagination import STYLES as STYLES
from asyncetl.connectors.http.sink import HttpSink as HttpSink
from asyncetl.connectors.http.sink import idempotency_key as idempotency_key
from asyncetl.connectors.http.source import HttpSource as HttpSource

__all__ = [
    "STYLES",
    "Auth",
    "ClientSettings",
    "HttpSink",
    "HttpSource",
    "Limits",
    "Timeouts",
    "idempotency_key",
    "redact_headers",
    "redact_url",
]
