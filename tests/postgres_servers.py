"""The PostgreSQL servers the tests talk to, besides the shared one.

Most tests use the shared server named by ``ASYNCETL_TEST_PG_*`` (127.0.0.1:5432 by
default). Some need what a shared server may not give: ``wal_level = logical`` for CDC
(a system server usually runs with ``replica``, and changing that needs a restart),
server-wide settings that a test changes, password users and TLS. For those, a test run
starts private clusters from the installed PostgreSQL binaries, each in a temporary
directory on a free port, and stops and deletes them when the run ends.

There are two kinds, so that the CDC tests see a server set up like the shared one:
a plain one (``secure=False``: logical WAL, no TLS, trust) and a secure one (TLS on,
password users). TLS is not just slower: it changes how the server's messages arrive
in reads, and with them where a CDC chunk ends.

The session fixtures that hand these out live in ``tests/conftest.py``; a cluster is
started only when a selected test asks for one.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from glob import glob
from pathlib import Path
from typing import ClassVar, TypeVar, TypeVarTuple
from urllib.parse import quote

import anyio
import asyncpg

from tests.ports import free_port

_PREFIX = "asyncetl_pg_"
_RUN_PID = "test-run.pid"  # the test process that owns the cluster in this directory

T = TypeVar("T")
Args = TypeVarTuple("Args")

# Names a server with wal_level = logical (a DSN of its ``postgres`` database, as a
# superuser) for the CDC tests, instead of the shared or a private one.
LOGICAL_DSN_VARIABLE = "ASYNCETL_TEST_PG_LOGICAL_DSN"

# Enough for every slot and walsender the CDC tests hold at once (a standby and its
# primary, killed consumers whose slots linger until their backend notices).
_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    # A throwaway cluster: losing it in a crash loses nothing. (Commits stay synchronous:
    # logical decoding sends only flushed WAL, so asynchronous commits would add latency.)
    "fsync": "off",
}


class ServerSetupError(RuntimeError):
    """The private cluster could not be made; the message says what to install or fix."""


class PrivateServer:
    """A throwaway PostgreSQL cluster on a free port, with logical WAL.

    ``postgres`` connects over TCP without a password. A secure one also has TLS on
    (``ca_file`` verifies it), the ``users`` connecting with ``password`` by the method
    named, and ``nossl_refused``, who may connect only over TLS.
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


def wal_level(dsn: str) -> str:
    """The ``wal_level`` of the server at ``dsn``."""

    async def show() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            return str(await conn.fetchval("SHOW wal_level"))
        finally:
            await conn.close()

    return _in_own_thread(show)


@contextlib.contextmanager
def private_server(*, secure: bool) -> Iterator[PrivateServer]:
    """Start a private cluster; stop it and delete its files on the way out, whatever happened.

    :param secure: TLS on and password users, for the authentication and TLS tests.
    :raises ServerSetupError: when the server binaries are missing or the cluster did not start.
    """
    bindir = find_bindir()
    owner = _cluster_owner()
    _remove_abandoned_clusters(bindir)
    directory = Path(tempfile.mkdtemp(prefix=_PREFIX))
    try:
        # Written whole, then renamed: a concurrent run must never read it half-written.
        (directory / "pid.tmp").write_text(str(os.getpid()))
        (directory / "pid.tmp").rename(directory / _RUN_PID)
        shutil.chown(directory, owner.pw_uid, owner.pw_gid)
        settings = dict(_SETTINGS)
        if secure:
            settings.update(_make_certificate(directory, owner))
        data = directory / "data"
        _run_as(owner, bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        (data / "pg_hba.conf").write_text(_hba(secure=secure))
        try:
            server = _start(bindir, owner, directory, settings)
            if secure:
                _in_own_thread(_create_users, server)
            yield server
        finally:
            # Also after a start that timed out: its postmaster may still come up.
            _stop(bindir, owner, data)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _remove_abandoned_clusters(bindir: Path) -> None:
    """Stop and delete the clusters of earlier runs that were killed (``kill -9``, a CI
    timeout) before their teardown could: those whose test process is gone."""
    for run_pid in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*/{_RUN_PID}"):
        if _alive(run_pid.read_text()):
            continue
        directory = run_pid.parent
        _stop(bindir, pwd.getpwuid(directory.stat().st_uid), directory / "data")
        shutil.rmtree(directory, ignore_errors=True)


def _stop(bindir: Path, owner: pwd.struct_passwd, data: Path) -> None:
    """Stop the cluster at once, if it runs: its files are deleted next, so no checkpoint."""
    _run_as(owner, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop", check=False)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def find_bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are: ``pg_config --bindir``, the PATH, or the newest
    ``/usr/lib/postgresql/*/bin`` (Debian keeps the server binaries off the PATH).

    :raises ServerSetupError: when none of them has ``initdb``.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if found.returncode == 0:
            candidates.append(Path(found.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).parent)
    candidates += sorted(
        (Path(p).parent for p in glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda bin: [int(n) for n in re.findall(r"\d+", bin.parent.name)],
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise ServerSetupError(
        "the PostgreSQL server binaries (initdb, pg_ctl) are not installed, so the tests "
        "cannot start their private cluster; install them (Debian: postgresql) or name a "
        f"server with wal_level = logical in {LOGICAL_DSN_VARIABLE}"
    )


def _cluster_owner() -> pwd.struct_passwd:
    """The user the cluster runs as: initdb and postgres refuse to run as root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ServerSetupError(
            "the tests run as root and there is no 'postgres' user to run their private "
            "PostgreSQL cluster as; create one or run the tests as another user"
        ) from None


def _run_as(
    owner: pwd.struct_passwd, *args: str | Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    as_other = owner.pw_uid != os.geteuid()
    result = subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        cwd="/",  # the caller's directory may be closed to the cluster's owner
        user=owner.pw_uid if as_other else None,
        group=owner.pw_gid if as_other else None,
        extra_groups=[] if as_other else None,
    )
    if check and result.returncode != 0:
        raise ServerSetupError(
            f"{Path(args[0]).name} failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result


def _make_certificate(directory: Path, owner: pwd.struct_passwd) -> dict[str, str]:
    """A self-signed certificate for 127.0.0.1; the settings that turn TLS on with it."""
    key, certificate = directory / "server.key", directory / "server.crt"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    request += ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
    request += ["-keyout", str(key), "-out", str(certificate)]
    subprocess.run(["openssl", *request], check=True, capture_output=True)
    shutil.chown(key, owner.pw_uid, owner.pw_gid)
    key.chmod(0o600)
    return {"ssl": "on", "ssl_cert_file": str(certificate), "ssl_key_file": str(key)}


def _hba(*, secure: bool) -> str:
    lines = ["local all all trust"]
    if secure:
        lines += [
            f"host all {user} 127.0.0.1/32 {how}" for user, how in PrivateServer.users.items()
        ]
        lines.append("hostnossl all nossl_refused 127.0.0.1/32 reject")
    lines.append("host all all 127.0.0.1/32 trust")
    return "\n".join(lines) + "\n"


def _start(
    bindir: Path, owner: pwd.struct_passwd, directory: Path, settings: dict[str, str]
) -> PrivateServer:
    """Start the cluster on a free port, trying another if a concurrent run took that one."""
    flags = [f"-k {directory}", *(f"-c {name}={value}" for name, value in settings.items())]
    log = directory / "log"
    failures = []
    for _ in range(3):
        port = free_port()
        options = " ".join([f"-p {port}", *flags])
        pg_ctl: list[str | Path] = [
            bindir / "pg_ctl",
            "-D",
            directory / "data",
            "-o",
            options,
            "-l",
            log,
        ]
        started = _run_as(owner, *pg_ctl, "-w", "-t", "60", "start", check=False)
        if started.returncode == 0:
            return PrivateServer(directory, port)
        failures.append(started.stderr.strip())
    server_log = log.read_text() if log.exists() else ""
    raise ServerSetupError(
        f"the private PostgreSQL cluster in {directory} did not start: "
        f"{' / '.join(failures)}; its log says: {server_log}"
    )


async def _create_users(server: PrivateServer) -> None:
    conn = await asyncpg.connect(server.dsn())
    try:
        # Constants only: CREATE ROLE takes no bound parameters.
        for user, method in server.users.items():
            encryption = "md5" if method == "md5" else "scram-sha-256"
            await conn.execute(f"SET password_encryption = '{encryption}'")
            await conn.execute(
                f"CREATE ROLE {user} LOGIN REPLICATION SUPERUSER PASSWORD '{server.password}'"
            )
        await conn.execute("CREATE ROLE nossl_refused LOGIN REPLICATION SUPERUSER")
    finally:
        await conn.close()


def _in_own_thread(function: Callable[[*Args], Awaitable[T]], *args: *Args) -> T:
    """Run ``function`` to completion from synchronous fixture code, on a thread of its own,
    so that the event loop anyio's pytest plugin keeps on this thread is left alone."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(lambda: anyio.run(function, *args)).result()
