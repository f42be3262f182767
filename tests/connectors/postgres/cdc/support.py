"""Fixtures and helpers shared by the CDC tests: databases whose slots are always dropped."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import anyio
import asyncpg
import pytest

from asyncetl.connectors.postgres.cdc import CdcSource
from asyncetl.core.batch import Chunk, Position
from asyncetl.core.changes import ChangeEvent
from tests.conftest import pg_dsn


def random_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


async def drop_replication_objects(dsn: str) -> None:
    """Drop every replication slot of ``dsn``'s database and every publication in it."""
    server, database = dsn.rsplit("/", 1)
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        with anyio.fail_after(20):
            while True:
                await admin.execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                    "WHERE database = $1 AND active_pid IS NOT NULL",
                    database,
                )
                slots = await admin.fetch(
                    "SELECT slot_name, active FROM pg_replication_slots WHERE database = $1",
                    database,
                )
                if not slots:
                    break
                for slot in slots:
                    if not slot["active"]:
                        with contextlib.suppress(asyncpg.ObjectInUseError):
                            await admin.execute("SELECT pg_drop_replication_slot($1)", slot[0])
                await anyio.sleep(0.05)
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn)
    try:
        for row in await conn.fetch("SELECT pubname FROM pg_publication"):
            await conn.execute(f'DROP PUBLICATION "{row[0]}"')
    finally:
        await conn.close()


@pytest.fixture
async def cdc_db(pg_database: str) -> AsyncIterator[str]:
    """A fresh source database; its slots and publications are dropped even on failure."""
    try:
        yield pg_database
    finally:
        await drop_replication_objects(pg_database)


@pytest.fixture
async def target_db() -> AsyncIterator[str]:
    """A second fresh database, for apply targets."""
    async with fresh_database(pg_dsn("postgres")) as dsn:
        yield dsn


@asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    """A new database on ``admin_dsn``'s server; its slots and the database go afterwards."""
    name = random_name("asyncetl_test")
    await execute(admin_dsn, f'CREATE DATABASE "{name}"')
    dsn = f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
    try:
        yield dsn
    finally:
        try:
            await drop_replication_objects(dsn)
        finally:
            await execute(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def execute(dsn: str, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def fetchval(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def confirmed_flush(dsn: str, slot: str) -> str | None:
    value: str | None = await fetchval(
        dsn, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot
    )
    return value


async def streaming(dsn: str, slot: str) -> bool:
    """Whether a consumer streams ``slot``: not merely "active", which a slot also is while
    CREATE_REPLICATION_SLOT still waits for its consistent point (a write then would
    land before the slot's start)."""
    state = await fetchval(
        dsn,
        "SELECT r.state FROM pg_replication_slots s JOIN pg_stat_replication r "
        "ON r.pid = s.active_pid WHERE s.slot_name = $1",
        slot,
    )
    return state in ("catchup", "streaming")


async def wait_for(check: Callable[[], Any], *, seconds: float = 30.0) -> Any:
    """Poll the async ``check`` until it returns something truthy."""
    with anyio.fail_after(seconds):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(0.05)


async def take(
    source: CdcSource,
    count: int,
    *,
    after: Position = None,
    max_chunk: int = 1000,
    seconds: float = 30.0,
    on_chunk: Callable[[Chunk[ChangeEvent]], Any] | None = None,
) -> tuple[list[ChangeEvent], list[Position]]:
    """Read ``source`` until ``count`` records came; the records and every chunk position."""
    records: list[ChangeEvent] = []
    positions: list[Position] = []
    with anyio.fail_after(seconds):
        async with aclosing(source.read(after, max_chunk=max_chunk)) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                records.extend(chunk.records)
                positions.append(chunk.position)
                if on_chunk is not None:
                    await on_chunk(chunk)
                if len(records) >= count:
                    break
    return records, positions


def rows_of(events: list[ChangeEvent]) -> list[tuple[str, Any, Any]]:
    """``(op, key, after)`` of each event: what the tests compare exactly."""
    return [(e.op, e.key, e.after) for e in events]


# -- a private server, for what must not touch the shared one ------------------------------


class PrivateServer:
    """A throwaway PostgreSQL cluster on a free port: TLS on, password users, logical WAL.

    Used where a test must change server-wide settings (``max_slot_wal_keep_size``)
    or authentication rules, which would disturb other tests on the shared server.
    """

    users: ClassVar[dict[str, str]] = {
        "plain_user": "password",
        "md5_user": "md5",
        "scram_user": "scram-sha-256",
    }
    password = "s3cret pass"

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.ca_file = str(directory / "server.crt")

    def dsn(
        self,
        user: str = "postgres",
        *,
        password: str | None = None,
        database: str = "postgres",
        query: str = "",
    ) -> str:
        auth = f"{user}:{quote(password, safe='')}" if password is not None else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}{'?' + query if query else ''}"


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("initdb is not installed")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _hba(server: type[PrivateServer]) -> str:
    lines = ["local all all trust"]
    lines += [f"host all {user} 127.0.0.1/32 {method}" for user, method in server.users.items()]
    lines.append("hostnossl all nossl_refused 127.0.0.1/32 reject")
    lines.append("host all all 127.0.0.1/32 trust")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivateServer]:
    bindir = _bindir()
    directory = Path(tempfile.mkdtemp(prefix="asyncetl_pg_"))
    data = directory / "data"
    server = PrivateServer(directory, _free_port())
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(directory / "server.key"),
            "-out",
            server.ca_file,
        ],
        check=True,
        capture_output=True,
    )
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres", str(directory)], check=True)
    os.chmod(directory / "server.key", 0o600)
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        (data / "pg_hba.conf").write_text(_hba(PrivateServer))
        options = (
            f"-p {server.port} -k {directory} -c listen_addresses=127.0.0.1 "
            f"-c wal_level=logical -c ssl=on -c ssl_cert_file={server.ca_file} "
            f"-c ssl_key_file={directory / 'server.key'} -c fsync=off "
            "-c max_replication_slots=10 -c max_wal_senders=10"
        )
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-w",
                    "-l",
                    str(directory / "log"),
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        try:
            _create_users(bindir, server)
            yield server
        finally:
            subprocess.run(
                _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _create_users(bindir: Path, server: PrivateServer) -> None:
    statements = []
    for user, method in server.users.items():
        encryption = "md5" if method == "md5" else "scram-sha-256"
        statements.append(
            f"SET password_encryption = '{encryption}'; CREATE ROLE {user} LOGIN "
            f"REPLICATION SUPERUSER PASSWORD '{server.password}';"
        )
    statements.append("CREATE ROLE nossl_refused LOGIN REPLICATION SUPERUSER;")
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "psql"),
                "-h",
                str(server.directory),
                "-p",
                str(server.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                " ".join(statements),
            ]
        ),
        check=True,
        capture_output=True,
    )
