"""HttpSink: deliver batches to an HTTP endpoint as JSON, idempotently."""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Mapping, Sequence

import anyio
import orjson

from asyncetl.connectors.http._client import (
    HttpStatusError,
    absolute_url,
    create_client,
)
from asyncetl.connectors.http._settings import ClientSettings, client_settings
from asyncetl.core.batch import Batch, Position, Reject
from asyncetl.core.errors import ConfigError
from asyncetl.core.interfaces import Problem, Sink
from asyncetl.core.jsonout import json_default
from asyncetl.core.settings_check import positive_int

__all__ = ["REJECT_STATUSES", "HttpSink", "idempotency_key"]

#: Statuses meaning "this record is refused", not "this endpoint is wrong".
REJECT_STATUSES = frozenset({400, 409, 413, 422})
_METHODS = ("POST", "PUT", "PATCH")


def idempotency_key(sink: str, url: str, position: Position, index: int | None = None) -> str:
    """The key of the request carrying a batch (or its ``index``-th record).

    It depends only on the sink, the URL and the batch's source position, so a
    replay after a crash sends the same key and the receiver can de-duplicate.
    """
    material = orjson.dumps([sink, url, position, index], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(material).hexdigest()


class HttpSink(Sink[object]):
    """POSTs each batch as a JSON array (or each record as a JSON object) to ``url``.

    Every request carries an ``Idempotency-Key`` derived from the batch's source
    position, stable across replays. Transient failures are retried like the
    source's. A record refused with 400, 409, 413 or 422 is returned as a reject
    (the pipeline's ``sink_errors`` policy decides): in batch mode such an
    answer makes the sink resend the batch one record per request to find the
    refused ones. Any other 4xx fails the run.

    :param url: the endpoint; a ``user:password@`` in it becomes the client's basic auth.
    :param name: the sink's name; part of the idempotency key.
    :param client: headers, auth, timeouts, retries and limits: a
        :class:`ClientSettings` or a mapping of its fields (a spec's
        ``[sink.client]`` table).
    :param per_record: one request per record instead of one per batch.
    :param method: ``POST``, ``PUT`` or ``PATCH``.
    :param max_concurrency: requests in flight at once in ``per_record`` mode.
    :param idempotency_header: the header carrying the key; empty to send none.
    :param flat: the client settings as flat keywords, as older specs give them
        (``timeout``, ``max_tries``, ``rate_limit``, ``auth``, ``headers``, ...).
    :raises ConfigError: on an invalid setting, or one given both flat and in ``client``.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "http",
        client: ClientSettings | Mapping[str, object] | None = None,
        per_record: bool = False,
        method: str = "POST",
        max_concurrency: int = 1,
        idempotency_header: str = "Idempotency-Key",
        **flat: object,
    ) -> None:
        where = f"HttpSink {name!r}"
        self.name = name
        self.per_record = per_record
        self.method = method.upper()
        if self.method not in _METHODS:
            raise ConfigError(
                f"must be one of {', '.join(_METHODS)}, not {method!r}", where=where, key="method"
            )
        self.max_concurrency = positive_int(max_concurrency, where, "max_concurrency")
        self.idempotency_header = idempotency_header
        settings = client_settings(client, flat, where=where, owner="HttpSink", accepted=_KEYWORDS)
        parsed = absolute_url(url, where)
        self.client, self.url = create_client(parsed, settings, where=where)
        # Keys are made from the URL as shown before its credentials moved to auth
        # (``user:***@``, a secret query value as configured; only its hash is
        # sent), so that a batch replayed across an upgrade keeps its key.
        shown = self.client.credentials_stripped(parsed)
        if parsed.raw_user is not None:
            shown = shown.with_user(parsed.user).with_password(parsed.password)
        self._key_url = self.client.show(shown)

    def __repr__(self) -> str:
        return (
            f"HttpSink({self.client.show(self.url)!r}, name={self.name!r}, "
            f"headers={self.client.shown_headers()})"
        )

    async def open(self) -> None:
        """Open the session and read credentials from the environment.

        :raises ConfigError: when a credential's environment variable is not set.
        """
        await self.client.open()

    async def aclose(self) -> None:
        """Close the session."""
        await self.client.close()

    async def check(self) -> list[Problem]:
        """Whether the URL's host resolves and accepts a TCP connection.

        Nothing is sent: every request of a sink may write, so only the connection
        is tried (no TLS handshake, no proxy), once, within the connect timeout.
        """
        host, port = self.url.host or "", self.url.port or 443
        try:
            with anyio.fail_after(self.client.settings.timeout.connect):
                stream = await anyio.connect_tcp(host, port)
            await stream.aclose()
        except (OSError, TimeoutError) as exc:
            target = f"{host}:{port} for {self.client.show(self.url)}"
            message = (
                f"cannot connect to {target}: {_reason(exc)}; "
                "check that the server is up and reachable"
            )
            return [Problem("url", message)]
        return []

    def key(self, position: Position, index: int | None = None) -> str:
        """The idempotency key of the batch at ``position`` (or of its ``index``-th record)."""
        return idempotency_key(self.name, self._key_url, position, index)

    async def write(self, batch: Batch[object]) -> Sequence[Reject]:
        """Deliver ``batch``; return once the server accepted every record it did not refuse.

        :raises TransientError: when the retries ran out.
        :raises PermanentError: on a status that is not about one record (e.g. 401, 404).
        """
        if not batch.records:
            return ()
        if self.per_record:
            return await self._each(batch.records, batch.position)
        try:
            await self._send(_dumps(list(batch.records)), self.key(batch.position))
        except HttpStatusError as exc:
            if exc.status not in REJECT_STATUSES:
                raise
            # Some record is refused: find which, one request per record.
            return await self._each(batch.records, batch.position, as_list=True)
        return ()

    async def _each(
        self, records: Sequence[object], position: Position, *, as_list: bool = False
    ) -> list[Reject]:
        outcomes: list[Reject | None] = [None] * len(records)
        errors: list[Exception] = []
        indexes = iter(range(len(records)))  # shared by the workers

        async def worker(scope: anyio.CancelScope) -> None:
            for index in indexes:
                try:
                    outcomes[index] = await self._one(records[index], position, index, as_list)
                except Exception as exc:
                    errors.append(exc)
                    scope.cancel()
                    return

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.max_concurrency, len(records))):
                tg.start_soon(worker, tg.cancel_scope)
        if errors:
            raise errors[0]
        return [outcome for outcome in outcomes if outcome is not None]

    async def _one(
        self, record: object, position: Position, index: int, as_list: bool
    ) -> Reject | None:
        body = _dumps([record] if as_list else record)
        try:
            await self._send(body, self.key(position, index))
        except HttpStatusError as exc:
            if exc.status not in REJECT_STATUSES:
                raise
            return Reject(record, exc)
        return None

    async def _send(self, body: bytes, key: str) -> None:
        headers = {"Content-Type": "application/json"}
        if self.idempotency_header:
            headers[self.idempotency_header] = key
        await self.client.request(self.method, self.url, body=body, headers=headers)


#: the keywords of HttpSink itself, listed when an unknown one is given
_KEYWORDS = [name for name in inspect.signature(HttpSink).parameters if name != "flat"]


def _dumps(value: object) -> bytes:
    return orjson.dumps(value, json_default, orjson.OPT_NON_STR_KEYS)


def _reason(exc: OSError) -> str:
    """Why a connection failed: anyio wraps each address's refusal in one summary error."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    failed = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    return os.strerror(failed.errno) if failed.errno else str(failed)
