"""The replication protocol client: authentication, TLS, commands and errors, on real servers."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncetl.connectors.postgres.cdc._protocol import (
    ConnectParams,
    ReplicationConnection,
    ServerError,
    map_protocol_errors,
)
from asyncetl.connectors.postgres.cdc._values import converter, parse_array, pg_text
from asyncetl.core.errors import ConfigError, PermanentError, TransientError
from tests.connectors.postgres.cdc.support import fetchval
from tests.postgres_servers import PrivateServer


async def identify(dsn: str) -> tuple[list[list[str | None]], str | None]:
    """IDENTIFY_SYSTEM over a fresh replication connection, and whether it used TLS."""
    params = ConnectParams.from_dsn(dsn)
    with map_protocol_errors(params.dsn, "identifying the system"):
        conn = await ReplicationConnection.connect(params)
        try:
            rows = await conn.command("IDENTIFY_SYSTEM")
            ssl = await fetchval(
                f"postgresql://postgres@127.0.0.1:{params.dsn.port}/postgres",
                "SELECT version FROM pg_stat_ssl WHERE pid = $1",
                conn.backend_pid,
            )
        finally:
            await conn.aclose()
    return rows, ssl


def test_scram_support_is_loaded_only_when_a_server_asks_for_it() -> None:
    # scramp brings asn1crypto, and importlib.metadata zipfile and email: start-up cost
    # for every run of the connector (test_password_authentication covers SCRAM itself).
    code = (
        "import sys, asyncetl.connectors.postgres, asyncetl.connectors.postgres.cdc._protocol; "
        "print(sorted(m for m in ('scramp', 'asn1crypto', 'importlib.metadata') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.anyio
@pytest.mark.parametrize("user", ["plain_user", "md5_user", "scram_user"])
async def test_password_authentication(private_pg: PrivateServer, user: str) -> None:
    rows, ssl = await identify(
        private_pg.dsn(user, password=private_pg.password, query="sslmode=disable")
    )
    assert len(rows) == 1 and rows[0][3] == "postgres"
    assert ssl is None


@pytest.mark.anyio
@pytest.mark.parametrize("user", ["plain_user", "md5_user", "scram_user"])
async def test_a_wrong_password_is_a_clear_permanent_error(
    private_pg: PrivateServer, user: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        await identify(private_pg.dsn(user, password="wrong secret"))
    message = str(caught.value)
    assert message.startswith(
        f"PostgreSQL at 127.0.0.1:{private_pg.port} refused role {user!r} "
        "for replication: password authentication failed for user"
    )
    assert message.endswith(
        "check the DSN's user and password, the role's REPLICATION attribute and pg_hba.conf"
    )
    assert "wrong secret" not in message


@pytest.mark.anyio
async def test_a_missing_password_is_a_clear_error(private_pg: PrivateServer) -> None:
    with pytest.raises(PermanentError, match="the server asks for a password but the DSN has none"):
        await identify(private_pg.dsn("scram_user"))


@pytest.mark.anyio
async def test_tls_by_sslmode(private_pg: PrivateServer) -> None:
    password = private_pg.password
    for mode in ("prefer", "require"):
        _, ssl = await identify(
            private_pg.dsn("scram_user", password=password, query=f"sslmode={mode}")
        )
        assert ssl is not None and ssl.startswith("TLS")
    verified = f"sslmode=verify-full&sslrootcert={private_pg.ca_file}"
    _, ssl = await identify(private_pg.dsn("scram_user", password=password, query=verified))
    assert ssl is not None
    # The server refuses this role without TLS.
    with pytest.raises(PermanentError, match="refused role 'nossl_refused'"):
        await identify(private_pg.dsn("nossl_refused", query="sslmode=disable"))
    _, ssl = await identify(private_pg.dsn("nossl_refused", query="sslmode=require"))
    assert ssl is not None
    # verify-full against the system CAs fails: the certificate is self-signed.
    with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
        await identify(private_pg.dsn("scram_user", password=password, query="sslmode=verify-full"))


@pytest.mark.anyio
async def test_require_fails_against_a_server_without_tls() -> None:
    # The shared server runs without TLS.
    with pytest.raises(
        PermanentError, match="the server does not support SSL but sslmode is require"
    ):
        await identify("postgresql://postgres@127.0.0.1:5432/postgres?sslmode=require")


@pytest.mark.anyio
async def test_command_errors_leave_the_connection_usable() -> None:
    conn = await ReplicationConnection.connect(
        ConnectParams.from_dsn("postgresql://postgres@127.0.0.1:5432/postgres")
    )
    try:
        with pytest.raises(ServerError) as caught:
            await conn.command("DROP_REPLICATION_SLOT no_such_slot_here")
        assert caught.value.code == "42704"
        assert caught.value.message == 'replication slot "no_such_slot_here" does not exist'
        assert (await conn.command("SELECT 1"))[0] == ["1"]
    finally:
        await conn.aclose()


@pytest.mark.anyio
async def test_unreachable_server_is_transient() -> None:
    params = ConnectParams.from_dsn("postgresql://u:topsecret@127.0.0.1:1/db")
    with pytest.raises(TransientError) as caught, map_protocol_errors(params.dsn, "connecting"):
        await ReplicationConnection.connect(params)
    assert str(caught.value).startswith(
        "replication connection to 127.0.0.1:1 was lost while connecting:"
    )
    assert "topsecret" not in str(caught.value)


def test_bad_sslmode_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError,
        match="sslmode 'sometimes' is not one of disable, allow, "
        "prefer, require, verify-ca, verify-full",
    ):
        ConnectParams.from_dsn("postgresql://u@h/db?sslmode=sometimes")


# -- values ------------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))
texts = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
)


@given(st.lists(scalars, max_size=6))
def test_int_arrays_round_trip(values: list[int | None]) -> None:
    assert parse_array(pg_text(values) or "", converter(23)) == values


@given(st.lists(st.lists(texts, min_size=2, max_size=2), max_size=4))
def test_nested_text_arrays_round_trip(values: list[list[str | None]]) -> None:
    assert parse_array(pg_text(values) or "", converter(25)) == values


def test_postgres_array_spellings() -> None:
    text = converter(1009)
    assert text(b'{a,"b c",NULL,"NULL","x\\"y",""}') == ["a", "b c", None, "NULL", 'x"y', ""]
    # Lists have no lower bounds: an array whose bounds are not 1 stays its text.
    assert converter(1007)(b"[0:1]={1,2}") == "[0:1]={1,2}"
    assert converter(1007)(b"{{1,2},{3,4}}") == [[1, 2], [3, 4]]
    assert converter(1007)(b"{}") == []
    assert converter(1184)(b"infinity") == "infinity"
    assert converter(16)(b"t") is True and converter(16)(b"false") is False
