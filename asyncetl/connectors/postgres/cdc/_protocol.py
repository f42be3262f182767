"""A small client for PostgreSQL's streaming replication protocol over anyio streams.

It does what asyncpg cannot (switch a connection into COPY-both mode) and
nothing more: the startup with ``replication=database``, TLS as libpq's
``sslmode`` asks, authentication (trust, cleartext password, MD5 and
SCRAM-SHA-256 via ``scramp``), replication commands as simple queries,
``START_REPLICATION``, and the CopyData frames of the stream (XLogData and
keepalives in, standby status updates out).

Failures surface as :class:`ServerError` (an ErrorResponse) or as OS / anyio
stream errors; :func:`map_protocol_errors` is this package's one boundary that
turns them into asyncetl errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from asyncetl.connectors.postgres._connect import Dsn
from asyncetl.connectors.postgres.cdc._values import SESSION_SETTINGS
from asyncetl.core.errors import AsyncetlError, ConfigError, PermanentError, TransientError

if TYPE_CHECKING:
    import scramp  # type: ignore[import-untyped]

__all__ = [
    "ConnectParams",
    "Keepalive",
    "ReplicationConnection",
    "ServerError",
    "lost_slot_message",
    "map_protocol_errors",
    "parse_error",
    "parse_keepalive",
]

_I32 = struct.Struct("!i")
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
_STATUS = struct.Struct("!cQQQqB")
_KEEPALIVE = struct.Struct("!QqB").unpack_from
_PG_EPOCH_UNIX = 946_684_800  # 2000-01-01 in Unix seconds
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_RECEIVE_BYTES = 256 * 1024

# Error classes worth retrying: connection exceptions, operator intervention
# (terminate_backend, shutdown), insufficient resources, and object-in-use
# (a slot still held by a dying consumer).
_TRANSIENT_CLASSES = ("08", "57", "53", "40")
_TRANSIENT_CODES = ("55006",)


class ServerError(Exception):
    """An ErrorResponse from the server.

    :param fields: the response's fields by code letter (``C`` SQLSTATE, ``M`` message…).
    """

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        self.code = fields.get("C", "XX000")
        self.message = fields.get("M", "unknown error")
        super().__init__(f"{self.message} (SQLSTATE {self.code})")


@dataclass(frozen=True, slots=True)
class Keepalive:
    """A primary keepalive: the server's WAL end, and whether it wants a reply now."""

    wal_end: int
    reply: bool


@dataclass(frozen=True, slots=True)
class ConnectParams:
    """Where and how to open a replication connection, from a ``postgresql://`` DSN."""

    dsn: Dsn
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    connect_timeout: float = 10.0
    application_name: str = "asyncetl"
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dsn(cls, url: str, *, application_name: str = "asyncetl") -> ConnectParams:
        """Parse ``url``; ``sslmode``, ``sslrootcert`` and ``connect_timeout`` come from its query.

        :raises ConfigError: for a DSN that is not a PostgreSQL URL or an unknown ``sslmode``.
        """
        dsn = Dsn.parse(url)
        query = parse_qs(urlsplit(url).query)
        sslmode = query.get("sslmode", ["prefer"])[0]
        if sslmode not in _SSLMODES:
            raise ConfigError(
                f"sslmode {sslmode!r} is not one of {', '.join(_SSLMODES)}", where=str(dsn)
            )
        timeout = float(query.get("connect_timeout", ["10"])[0])
        root = query.get("sslrootcert", [None])[0]
        return cls(dsn, sslmode, root, timeout, application_name)


@contextmanager
def map_protocol_errors(dsn: Dsn, what: str) -> Iterator[None]:
    """Turn server errors and broken connections raised inside into asyncetl errors.

    :raises TransientError: for lost connections and server errors worth retrying.
    :raises PermanentError: for the rest (authentication, missing slot, bad command…).
    """
    try:
        yield
    except AsyncetlError:
        raise
    except ServerError as exc:
        detail = dsn.scrub(exc.message)
        if exc.code.startswith(_TRANSIENT_CLASSES) or exc.code in _TRANSIENT_CODES:
            raise TransientError(
                f"replication connection to {dsn.where} failed while {what}: {detail}"
            ) from exc
        if exc.code == "55000" and "no longer" in exc.message:
            raise PermanentError(lost_slot_message(dsn, exc.message)) from exc
        if exc.code.startswith("28"):
            raise PermanentError(
                f"PostgreSQL at {dsn.host}:{dsn.port} refused role {dsn.user!r} "
                f"for replication: {detail}; check the DSN's user and password, "
                "the role's REPLICATION attribute and pg_hba.conf"
            ) from exc
        raise PermanentError(f"PostgreSQL at {dsn.where} refused {what}: {detail}") from exc
    except (
        OSError,
        ssl.SSLError,
        anyio.BrokenResourceError,
        anyio.EndOfStream,
        anyio.ClosedResourceError,
        TimeoutError,
    ) as exc:
        reason = dsn.scrub(str(exc) or type(exc).__name__)
        raise TransientError(
            f"replication connection to {dsn.host}:{dsn.port} was lost while {what}: {reason}"
        ) from exc


def lost_slot_message(dsn: Dsn, detail: str) -> str:
    """The one sentence for a slot whose WAL is gone."""
    return (
        f"the replication slot on {dsn.where} has lost WAL it still needed ({detail}), so changes "
        "were removed before they were read; drop the slot and the pipeline's checkpoint "
        "(python -m asyncetl cdc drop SPEC) and run again to re-create the slot and re-snapshot"
    )


class ReplicationConnection:
    """One replication connection. Create it with :meth:`connect`; close it with :meth:`aclose`."""

    def __init__(self, stream: anyio.abc.ByteStream, params: ConnectParams) -> None:
        self._stream = stream
        self._params = params
        self._buffer = bytearray()
        self._send_lock = anyio.Lock()
        self.server_parameters: dict[str, str] = {}
        self.backend_pid: int | None = None
        self.streaming = False

    # -- connection -------------------------------------------------------------------

    @classmethod
    async def connect(cls, params: ConnectParams) -> ReplicationConnection:
        """Open a ``replication=database`` connection, authenticated and ready for commands.

        :raises ServerError: when the server refuses the connection.
        :raises OSError: when the server cannot be reached.
        """
        with anyio.fail_after(params.connect_timeout):
            stream = await _open_stream(params)
            conn = cls(stream, params)
            try:
                await conn._startup()
            except BaseException:
                await conn.aclose()
                raise
        return conn

    async def aclose(self) -> None:
        """Say goodbye (Terminate) and close the socket; never raises."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            with contextlib.suppress(Exception):  # the socket may already be gone
                await self._stream.send(b"X\x00\x00\x00\x04")
            with contextlib.suppress(Exception):
                await self._stream.aclose()

    async def _startup(self) -> None:
        params = self._params
        options = {
            "user": params.dsn.user,
            "database": params.dsn.database,
            "replication": "database",
            "application_name": params.application_name,
            **SESSION_SETTINGS,
            **params.settings,
        }
        body = (
            _I32.pack(196608)
            + b"".join(k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in options.items())
            + b"\x00"
        )
        await self._stream.send(_I32.pack(len(body) + 4) + body)
        await self._authenticate()
        while True:
            kind, payload = await self._receive()
            if kind == 90:  # Z: ReadyForQuery
                return
            if kind == 83:  # S: ParameterStatus
                name, value, _ = payload.split(b"\x00", 2)
                self.server_parameters[name.decode()] = value.decode()
            elif kind == 75:  # K: BackendKeyData
                self.backend_pid = _I32.unpack_from(payload)[0]

    async def _authenticate(self) -> None:
        password = self._params.dsn.password
        scram: scramp.ScramClient | None = None
        while True:
            kind, payload = await self._receive()
            if kind != 82:  # R
                raise ServerError(
                    {"C": "08P01", "M": f"unexpected message {chr(kind)!r} during authentication"}
                )
            (code,) = _I32.unpack_from(payload)
            if code == 0:
                return
            if code in (3, 5, 10) and password is None:
                raise ServerError(
                    {"C": "28P01", "M": "the server asks for a password but the DSN has none"}
                )
            if code == 3:  # cleartext
                await self._send(b"p", (password or "").encode() + b"\x00")
            elif code == 5:  # MD5 with a 4-byte salt
                await self._send(b"p", _md5(self._params.dsn.user, password or "", payload[4:8]))
            elif code == 10:  # SASL: pick SCRAM-SHA-256
                mechanisms = [m.decode() for m in payload[4:].split(b"\x00") if m]
                if "SCRAM-SHA-256" not in mechanisms:
                    raise ServerError(
                        {"C": "28000", "M": f"unsupported SASL mechanisms {mechanisms}"}
                    )
                scram = _scram_client(self._params.dsn.user, password or "")
                first = scram.get_client_first().encode()
                await self._send(b"p", b"SCRAM-SHA-256\x00" + _I32.pack(len(first)) + first)
            elif code == 11 and scram is not None:  # SASLContinue
                scram.set_server_first(payload[4:].decode())
                await self._send(b"p", scram.get_client_final().encode())
            elif code == 12 and scram is not None:  # SASLFinal
                scram.set_server_final(payload[4:].decode())
            else:
                raise ServerError({"C": "28000", "M": f"unsupported authentication request {code}"})

    # -- commands -----------------------------------------------------------------------

    async def command(self, sql: str) -> list[list[str | None]]:
        """Run one replication command (or SQL) as a simple query; the rows, as text.

        :raises ServerError: when the command fails; the connection stays usable.
        """
        await self._send(b"Q", sql.encode() + b"\x00")
        rows: list[list[str | None]] = []
        error: ServerError | None = None
        while True:
            kind, payload = await self._receive(raise_errors=False)
            if kind == 68:  # D: DataRow
                rows.append(_data_row(payload))
            elif kind == 69:  # E
                error = ServerError(_error_fields(payload))
            elif kind == 90:  # Z
                if error is not None:
                    raise error
                return rows

    async def start_replication(self, slot: str, lsn: int, options: dict[str, str]) -> None:
        """Send ``START_REPLICATION SLOT … LOGICAL lsn (options)`` and wait for CopyBoth.

        :param slot: a validated slot name (lower-case letters, digits, underscores).
        :param options: plugin options; values are quoted here as string literals.
        :raises ServerError: when the server refuses (missing slot, lost WAL, slot in use…).
        """
        opts = ", ".join(f"{name} {_literal(value)}" for name, value in options.items())
        lsn_text = f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
        await self._send(
            b"Q", f"START_REPLICATION SLOT {slot} LOGICAL {lsn_text} ({opts})".encode() + b"\x00"
        )
        while True:
            kind, _ = await self._receive()
            if kind == 87:  # W: CopyBothResponse
                self.streaming = True
                return

    # -- streaming ------------------------------------------------------------------------

    async def receive_bytes(self) -> bytes:
        """The next bytes of the stream, unframed (the caller splits the messages).

        While streaming, framing is left to the caller so that it can decode
        messages in place instead of copying each one out.

        :raises anyio.EndOfStream: when the server closed the connection.
        """
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        return await self._stream.receive(_RECEIVE_BYTES)

    async def send_status(self, write: int, flush: int, apply: int, *, reply: bool = False) -> None:
        """Send a standby status update: what was received, flushed and applied."""
        now = int((time.time() - _PG_EPOCH_UNIX) * 1_000_000)
        await self._send(b"d", _STATUS.pack(b"r", write, flush, apply, now, 1 if reply else 0))

    # -- framing ----------------------------------------------------------------------------

    async def _send(self, kind: bytes, payload: bytes) -> None:
        async with self._send_lock:
            await self._stream.send(kind + _I32.pack(len(payload) + 4) + payload)

    async def _receive(self, *, raise_errors: bool = True) -> tuple[int, bytes]:
        while True:
            message = self._pop_one()
            if message is not None:
                kind, payload = message
                if kind == 69 and raise_errors:
                    raise ServerError(_error_fields(payload))
                if kind == 78:  # N: NoticeResponse
                    continue
                return message
            self._buffer += await self._stream.receive(_RECEIVE_BYTES)

    def _pop_one(self) -> tuple[int, bytes] | None:
        buf = self._buffer
        if len(buf) < 5:
            return None
        end = 1 + _I32.unpack_from(buf, 1)[0]
        if len(buf) < end:
            return None
        message = (buf[0], bytes(buf[5:end]))
        del buf[:end]
        return message


def parse_keepalive(payload: bytes) -> Keepalive:
    """A primary keepalive (``k``) CopyData payload."""
    wal_end, _sent, reply = _KEEPALIVE(payload, 1)
    return Keepalive(wal_end, bool(reply))


async def _open_stream(params: ConnectParams) -> anyio.abc.ByteStream:
    dsn = params.dsn
    stream: anyio.abc.ByteStream
    if dsn.host.startswith("/"):
        stream = await anyio.connect_unix(f"{dsn.host}/.s.PGSQL.{dsn.port}")
        return stream
    stream = await anyio.connect_tcp(dsn.host, dsn.port)
    if params.sslmode in ("disable", "allow"):
        return stream
    try:
        await stream.send(_SSL_REQUEST)
        answer = await stream.receive(1)
        if answer == b"S":
            return await TLSStream.wrap(
                stream,
                hostname=dsn.host,
                ssl_context=_ssl_context(params),
                standard_compatible=False,
            )
        if params.sslmode != "prefer":
            raise ServerError(  # noqa: TRY301 - closes the stream on the way out
                {
                    "C": "0A000",
                    "M": f"the server does not support SSL but sslmode is {params.sslmode}",
                }
            )
    except BaseException:
        await stream.aclose()
        raise
    return stream


def _ssl_context(params: ConnectParams) -> ssl.SSLContext:
    if params.sslmode in ("verify-ca", "verify-full"):
        context = ssl.create_default_context(cafile=params.sslrootcert)
        context.check_hostname = params.sslmode == "verify-full"
        return context
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _scram_client(user: str, password: str) -> scramp.ScramClient:
    # Imported when a server asks for SCRAM: scramp brings asn1crypto, tens of milliseconds
    # of every start-up otherwise, also for servers that trust or ask for MD5.
    import scramp

    return scramp.ScramClient(["SCRAM-SHA-256"], user, password)


def _md5(user: str, password: str, salt: bytes) -> bytes:
    inner = hashlib.md5((password + user).encode()).hexdigest()  # noqa: S324 - the protocol's own
    return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode() + b"\x00"  # noqa: S324


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _data_row(payload: bytes) -> list[str | None]:
    count = struct.unpack_from("!h", payload)[0]
    pos = 2
    values: list[str | None] = []
    for _ in range(count):
        (length,) = _I32.unpack_from(payload, pos)
        pos += 4
        if length < 0:
            values.append(None)
        else:
            values.append(payload[pos : pos + length].decode())
            pos += length
    return values


def parse_error(payload: bytes) -> ServerError:
    """The ServerError that an ErrorResponse payload describes."""
    return ServerError(_error_fields(payload))


def _error_fields(payload: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in payload.split(b"\x00"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields
