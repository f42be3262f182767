"""Backfill spec files: a ``[backfill]`` table naming the work for one partition.

::

    [backfill]
    name = "daily_totals"                     # default: the file's stem
    function = "backfill_daily:load_day"      # async fn(partition, **params)…
    # pipeline = "load_day.toml"              # …or a pipeline spec run per partition
    every = "day"                             # hour, day, month, or int (with size)
    start = "2024-01-01"                      # defaults for --start/--end
    end = "2024-03-31"
    order = "oldest"                          # or newest
    parallel = 4
    max_tries = 3
    timeout = 600                             # seconds per try
    lease = 60
    grace_period = 30
    store = "asyncetl_backfill.db"            # a SQLite file, or a postgresql:// DSN

    [backfill.params]                         # keyword arguments of the function
    source_dsn = "${SOURCE_DSN}"

A pipeline spec run per partition may use ``${PARTITION_KEY}``,
``${PARTITION_START}`` and ``${PARTITION_END}`` anywhere (give its pipeline a
name with ``${PARTITION_KEY}`` in it when it keeps checkpoints, so partitions
do not share one).
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread

from asyncetl import ConfigError
from asyncetl.backfill import EVERY, BackfillStore, Order, Partition, PartitionJob
from asyncetl.spec._files import (
    bind_params,
    check_keys,
    import_function,
    read_toml,
    substitute,
    typed,
)
from asyncetl.spec._secrets import hiding_secrets
from asyncetl.spec.pipeline import build_pipeline

__all__ = [
    "DEFAULT_STORE",
    "BackfillSpec",
    "PipelineJob",
    "backfill_store_at",
    "load_backfill_spec",
]

#: Where statuses live when a spec names no store.
DEFAULT_STORE = "asyncetl_backfill.db"

_KEYS = {
    "name",
    "function",
    "pipeline",
    "params",
    "every",
    "size",
    "start",
    "end",
    "order",
    "parallel",
    "max_tries",
    "retry_base_delay",
    "retry_max_delay",
    "retry_max_time",
    "timeout",
    "lease",
    "grace_period",
    "store",
}
_TOP = {"backfill", "logging"}
_NUMBERS = (
    "retry_base_delay",
    "retry_max_delay",
    "retry_max_time",
    "timeout",
    "lease",
    "grace_period",
)


@dataclass(frozen=True, slots=True)
class BackfillSpec:
    """A parsed backfill spec; ``None`` means the runner's default."""

    path: Path
    name: str
    job: PartitionJob
    every: str
    size: int | None
    start: str | None
    end: str | None
    order: Order
    store: str
    parallel: int | None = None
    max_tries: int | None = None
    retry_base_delay: float | None = None
    retry_max_delay: float | None = None
    retry_max_time: float | None = None
    timeout: float | None = None
    lease: float | None = None
    grace_period: float | None = None

    def runner_options(self) -> dict[str, Any]:
        """The runner keywords the spec sets."""
        names = ("parallel", "max_tries", *_NUMBERS)
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@hiding_secrets
def load_backfill_spec(path: str | os.PathLike[str], *, resolve: bool = True) -> BackfillSpec:
    """Read and check a backfill spec; imports its function.

    :param resolve: build the job; without it (to read statuses) the function
        and its params are neither imported nor filled in, and the job refuses to run.
    :raises ConfigError: naming file and key for anything wrong.
    """
    where = str(path)
    document = read_toml(path, what="file")
    check_keys(document, _TOP, where, "")
    raw = document.get("backfill")
    if not isinstance(raw, dict):
        raise ConfigError("needs a [backfill] table", where=where, key="backfill")
    check_keys(raw, _KEYS, where, "backfill")
    if not resolve:
        raw = {k: v for k, v in raw.items() if k not in ("function", "pipeline", "params")}
    table = substitute(raw, where, "backfill")
    return BackfillSpec(
        path=Path(path),
        name=typed(table, "name", str, where, "backfill") or Path(path).stem,
        job=_job(table, Path(path), where) if resolve else _unresolved,
        every=_every(table, where),
        size=typed(table, "size", int, where, "backfill"),
        start=_bound(table, "start", where),
        end=_bound(table, "end", where),
        order=_order(table, where),
        store=typed(table, "store", str, where, "backfill") or DEFAULT_STORE,
        parallel=typed(table, "parallel", int, where, "backfill"),
        max_tries=typed(table, "max_tries", int, where, "backfill"),
        **{name: typed(table, name, (int, float), where, "backfill") for name in _NUMBERS},
    )


def _job(table: dict[str, Any], path: Path, where: str) -> PartitionJob:
    function = typed(table, "function", str, where, "backfill")
    pipeline = typed(table, "pipeline", str, where, "backfill")
    params = typed(table, "params", dict, where, "backfill") or {}
    if (function is None) == (pipeline is None):
        raise ConfigError(
            "set exactly one of function (module:async_function) or pipeline "
            "(a pipeline spec file)",
            where=where,
            key="backfill.function",
        )
    if pipeline is not None:
        if params:
            raise ConfigError(
                "params apply to a function, not a pipeline", where=where, key="backfill.params"
            )
        return PipelineJob(pipeline)
    fn = import_function(function, where, "backfill.function", path.resolve().parent)
    bind_params(fn, 1, params, where, "backfill.params")
    return functools.partial(fn, **params)


async def _unresolved(partition: Partition, /) -> None:
    raise ConfigError("this spec was loaded without its job (resolve=False)")


def _every(table: dict[str, Any], where: str) -> str:
    every = typed(table, "every", str, where, "backfill") or "day"
    if every not in EVERY:
        raise ConfigError(
            f"expected one of {', '.join(EVERY)}, got {every!r}", where=where, key="backfill.every"
        )
    return every


def _bound(table: dict[str, Any], name: str, where: str) -> str | None:
    value = table.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(
            f"expected a date string or an integer, got {value!r}",
            where=where,
            key=f"backfill.{name}",
        )
    return str(value)


def _order(table: dict[str, Any], where: str) -> Order:
    order = typed(table, "order", str, where, "backfill") or "oldest"
    if order not in ("oldest", "newest"):
        raise ConfigError(
            f"expected 'oldest' or 'newest', got {order!r}", where=where, key="backfill.order"
        )
    return order  # type: ignore[return-value]


class PipelineJob:
    """Runs a pipeline spec once per partition, its ``${PARTITION_*}`` references filled in.

    The spec is written with the values substituted to a temporary file beside
    it (so its relative names resolve as before), built with
    :func:`asyncetl.spec.build_pipeline`, and run until its source is exhausted.

    :param spec: the pipeline spec file.
    """

    def __init__(self, spec: str) -> None:
        self.spec = Path(spec)

    async def __call__(self, partition: Partition, /) -> None:
        pipeline = await anyio.to_thread.run_sync(self._build, partition)
        await pipeline.run()

    def _build(self, partition: Partition) -> Any:
        text = self._text()
        for name, value in partition.variables.items():
            text = text.replace("${" + name + "}", value)
        fd, temp = tempfile.mkstemp(
            prefix=f".{self.spec.stem}.", suffix=".toml", dir=self.spec.resolve().parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            try:
                return build_pipeline(temp)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace(temp, str(self.spec))) from exc
        finally:
            Path(temp).unlink(missing_ok=True)

    def _text(self) -> str:
        try:
            return self.spec.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read the pipeline spec: {exc.strerror}", where=str(self.spec)
            ) from exc


def backfill_store_at(location: str) -> BackfillStore:
    """The status store at ``location``: PostgreSQL for a ``postgresql://`` DSN, else SQLite.

    Connectors are imported only when named, so a SQLite backfill never loads asyncpg.
    """
    # Anything PostgreSQL-like, mistyped ("postgresql:/…") included, goes to the DSN parser,
    # which refuses it without its password, rather than becoming a SQLite file name.
    if location.lower().startswith("postgres") and ":" in location:
        from asyncetl.connectors.postgres.backfill_store import PostgresBackfillStore

        return PostgresBackfillStore(location)
    from asyncetl.connectors.sqlite.backfill_store import SqliteBackfillStore

    return SqliteBackfillStore(location)
