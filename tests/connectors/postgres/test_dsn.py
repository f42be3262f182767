"""DSNs: parsed as libpq reads them, refused with their password hidden when mistyped."""

from __future__ import annotations

import pytest

from asyncetl import ConfigError
from asyncetl.connectors.postgres import PostgresSink
from asyncetl.connectors.postgres._connect import Dsn

ESCAPES = "a password or database name must write '@', '/', '?' and '#' as %40, %2F, %3F and %23"


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        (
            "postgresql://etl:s3cr#3t@db:5432/app",
            f"cannot read 'postgresql://etl:***@db:5432/app': {ESCAPES}",
        ),
        (
            "postgresql://etl:s3cr/3t@db/app",
            f"cannot read 'postgresql://etl:***@db/app': {ESCAPES}",
        ),
        (
            "postgresql://etl:s3cr?3t@db/app",
            f"cannot read 'postgresql://etl:***@db/app': {ESCAPES}",
        ),
        (
            "postgresql://etl:54?s3cr3t@db/app",
            f"cannot read 'postgresql://etl:***@db/app': {ESCAPES}",
        ),
        (
            "postgresql:/etl:s3cr3t@db/app",
            "'postgresql:/etl:***@db/app' is not a PostgreSQL DSN; "
            "write postgresql://user@host:port/database (user:password@ with a password)",
        ),
        (
            "postgres:etl:s3cr3t@db/app",
            "'postgres:***@db/app' is not a PostgreSQL DSN; "
            "write postgresql://user@host:port/database (user:password@ with a password)",
        ),
        (
            "postgresql://etl:s3cr3t@db:54x/app",
            "'postgresql://etl:***@db:54x/app' has an invalid port (a password must write "
            "'/', '?' and '#' as %2F, %3F and %23)",
        ),
    ],
)
def test_a_mistyped_dsn_is_a_config_error_without_its_password(dsn: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Dsn.parse(dsn)
    assert str(caught.value) == message
    assert caught.value.__cause__ is None


def test_escaped_characters_in_the_password_are_read_and_never_shown() -> None:
    dsn = Dsn.parse("postgresql://etl:s3cr%23%2F%3F%403t@db:5433/app?user=x@tenant")
    assert (dsn.user, dsn.password, dsn.host, dsn.port) == ("etl", "s3cr#/?@3t", "db", 5433)
    assert str(dsn) == "postgresql://etl@db:5433/app"
    assert dsn.scrub("auth failed for s3cr#/?@3t") == "auth failed for ***"
    assert "s3cr" not in repr(dsn)


def test_a_connector_refuses_a_mistyped_dsn_when_made() -> None:
    with pytest.raises(ConfigError, match=r"^cannot read 'postgresql://etl:\*\*\*@db/app'"):
        PostgresSink("postgresql://etl:s3cr#3t@db/app", "orders", key=["id"])
