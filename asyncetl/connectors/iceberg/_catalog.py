"""Where the tables are: a SQL catalog (SQLite or PostgreSQL) and a local warehouse directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import sqlalchemy
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from asyncetl.core.errors import ConfigError, PermanentError, TransientError
from asyncetl.core.interfaces import Problem
from asyncetl.core.redact import redact_url, redact_urls

__all__ = ["CatalogSettings", "describe", "mapped", "split_identifier"]

_SCHEMES: Final = ("sqlite:///", "postgresql://", "postgresql+psycopg2://")


@dataclass(frozen=True, slots=True)
class CatalogSettings:
    """A SQL catalog and its warehouse, as every Iceberg resource of one pipeline shares them.

    :param warehouse: the warehouse directory; created when missing.
    :param uri: the catalog database: ``sqlite:///path`` (the default is
        ``catalog.db`` in the warehouse) or ``postgresql://user@host/db``.
    :param name: the catalog's name, as readers open it (rows of one catalog
        database are kept apart by it).
    """

    warehouse: str
    uri: str | None = None
    name: str = "asyncetl"

    def __repr__(self) -> str:
        uri = None if self.uri is None else redact_url(self.uri)
        return f"CatalogSettings(warehouse={self.warehouse!r}, uri={uri!r}, name={self.name!r})"

    def check(self, where: str) -> None:
        """:raises ConfigError: for an empty warehouse or name, or an unknown catalog URI scheme."""
        if not self.warehouse:
            raise ConfigError("must name a directory", where=where, key="warehouse")
        if not self.name:
            raise ConfigError("must not be empty", where=where, key="catalog")
        if self.uri is not None and not self.uri.startswith(_SCHEMES):
            raise ConfigError(
                f"{redact_url(self.uri)!r} is not a catalog database URI; use "
                "sqlite:///path/catalog.db or postgresql://user@host/database",
                where=where,
                key="catalog_uri",
            )

    @property
    def database_uri(self) -> str:
        """The SQLAlchemy URI of the catalog database."""
        if self.uri is None:
            return f"sqlite:///{Path(self.warehouse).resolve() / 'catalog.db'}"
        if self.uri.startswith("sqlite:///"):
            # Absolute, so that two resources naming one file by different paths agree.
            return f"sqlite:///{Path(self.uri.removeprefix('sqlite:///')).resolve()}"
        if self.uri.startswith("postgresql://"):
            return "postgresql+psycopg2://" + self.uri.removeprefix("postgresql://")
        return self.uri

    def problems(self) -> list[Problem]:
        """What would keep the catalog from opening; a question only, creating nothing.

        Blocks: call it in a worker thread.
        """
        parent = Path(self.warehouse).resolve()
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            return [Problem("warehouse", f"{parent} is not a directory")]
        if self.uri is None or self.uri.startswith("sqlite:"):
            return []
        try:
            engine = sqlalchemy.create_engine(self.database_uri)
            try:
                with engine.connect():
                    pass
            finally:
                engine.dispose()
        except SQLAlchemyError as exc:
            problem = f"the catalog database does not answer: {describe(exc)}"
            return [Problem("catalog_uri", problem)]
        return []

    def open(self) -> SqlCatalog:
        """Connect to the catalog, creating the warehouse and the catalog tables when missing.

        Blocks: call it in a worker thread.

        :raises PermanentError: when the catalog database cannot be reached or created.
        """
        warehouse = Path(self.warehouse).resolve()
        try:
            os.makedirs(warehouse, exist_ok=True)
            return SqlCatalog(
                self.name,
                uri=self.database_uri,
                warehouse=warehouse.as_uri(),
                init_catalog_tables="true",
            )
        except (OSError, OperationalError) as exc:
            raise PermanentError(
                f"cannot open Iceberg catalog {self.name!r} at {redact_url(self.database_uri)}: "
                f"{describe(exc)}; check catalog_uri and warehouse"
            ) from exc


def mapped(exc: Exception, what: str) -> Exception:
    """The asyncetl error for pyiceberg's ``exc``, raised while doing ``what``.

    A commit that lost a race with another writer, or a catalog database that
    is locked or unreachable for a moment, is transient; anything else is not.
    """
    if isinstance(exc, CommitFailedException | OperationalError):
        return TransientError(f"{what} failed and will be retried: {describe(exc)}")
    return PermanentError(f"{what} failed: {describe(exc)}")


def describe(exc: BaseException) -> str:
    """``exc`` in one line, without any password a URL in it carried."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return redact_urls(f"{type(exc).__name__}: {text}")


def split_identifier(where: str, key: str, text: str) -> tuple[str, str]:
    """``namespace.table`` as its two parts.

    :raises ConfigError: when either part is missing.
    """
    namespace, _, table = text.rpartition(".")
    if not namespace or not table:
        raise ConfigError(
            f"{text!r} is not namespace.table (e.g. 'public.orders')", where=where, key=key
        )
    return namespace, table
