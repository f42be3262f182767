"""Pipeline spec files: a TOML file, or ``module:attribute``, turned into a Pipeline.

A spec file has the tables ``[pipeline]``, ``[source]``, ``[[transforms]]``,
``[sink]``, ``[checkpoints]``, ``[dead_letters]`` and ``[logging]``::

    [pipeline]
    name = "orders"                 # required; any other Pipeline keyword too
    source_errors = "dead_letter"

    [source]
    type = "jsonl"                  # a name from REGISTRY, or "some.module:Class"
    path = "data/orders.jsonl"      # every other key is a constructor keyword

    [[transforms]]
    function = "my_transforms:parse_order"
    on_error = "dead_letter"

    [sink]
    type = "sqlite"
    path = "${ORDERS_DB:-orders.db}"
    table = "orders"

Rules:

- ``${VAR}`` and ``${VAR:-default}`` in any string value are replaced from the
  environment, else from env files (:func:`asyncetl.spec.use_env_file`); the
  default also applies when ``VAR`` is empty. ``${file:/path}`` is the file's
  content without its trailing newline. ``$${`` is a literal ``${``; an unclosed
  ``${`` is an error. Where a key expects a number or a boolean, substituted text
  is read as one: ``max_batch_size = "${BATCH_SIZE:-500}"``.
- Values from env files and ``${file:…}`` are secrets: messages show ``***``
  for them, and never a URL's password.
- Relative paths are passed on unchanged, so they are relative to the current
  directory, as for any command-line tool.
- ``module:function`` and ``module:Class`` names are imported with the current
  directory and the spec file's directory on ``sys.path`` (as ``python -m`` does
  for the current directory).
- A table's keys become keyword arguments of the class's constructor. Unknown
  keys, missing required keys and values of the wrong type (checked against the
  constructor's type hints) are errors naming the file and the key.
- Without ``[checkpoints]`` positions are kept in memory, so each run starts
  from the beginning.

Every problem raises :class:`~asyncetl.core.errors.ConfigError` with the message
``<file>: <key>: <what is wrong>``. The pipeline is built with the same public
classes an embedding application uses.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast

from asyncetl import (
    CheckpointStore,
    ConfigError,
    DeadLetterStore,
    Pipeline,
    Sink,
    Source,
    Transform,
)
from asyncetl.core.logs import LOG_LEVELS, LogFormat
from asyncetl.spec._files import (
    UnsetVariable,
    import_attribute,
    make_importable,
    read_toml,
    substitute,
)
from asyncetl.spec._hints import checked, hints, show
from asyncetl.spec._secrets import hiding_secrets, redact, secrets_hidden, shows_secret
from asyncetl.spec._unopened import unopened

__all__ = [
    "REGISTRY",
    "LoggingSettings",
    "build_pipeline",
    "load_pipeline",
    "logging_settings",
    "register",
]

Kind: TypeAlias = Literal["source", "sink", "checkpoints", "dead_letters"]

#: kind → ``type`` name → ``"module:Class"``, imported only when a spec names it.
REGISTRY: dict[str, dict[str, str]] = {
    "source": {
        "csv": "asyncetl.connectors.files:CsvSource",
        "http": "asyncetl.connectors.http:HttpSource",
        "jsonl": "asyncetl.connectors.files:JsonlSource",
        "kafka": "asyncetl.connectors.kafka:KafkaSource",
        "list": "asyncetl:ListSource",
        "nats": "asyncetl.connectors.nats:JetStreamSource",
        "postgres": "asyncetl.connectors.postgres:TableSource",
        "postgres_cdc": "asyncetl.connectors.postgres:CdcSource",
        "postgres_tables": "asyncetl.connectors.postgres:TablesSource",
        "redis": "asyncetl.connectors.redis:RedisStreamSource",
    },
    "sink": {
        "duckdb": "asyncetl.connectors.duckdb:DuckDBSink",
        "http": "asyncetl.connectors.http:HttpSink",
        "iceberg": "asyncetl.connectors.iceberg:IcebergSink",
        "jsonl": "asyncetl.connectors.files:JsonlSink",
        "kafka": "asyncetl.connectors.kafka:KafkaSink",
        "nats": "asyncetl.connectors.nats:JetStreamSink",
        "null": "asyncetl:NullSink",
        "parquet": "asyncetl.connectors.parquet:ParquetSink",
        "postgres": "asyncetl.connectors.postgres:PostgresSink",
        "postgres_apply": "asyncetl.connectors.postgres:ApplySink",
        "postgres_tables": "asyncetl.connectors.postgres:TablesSink",
        "redis": "asyncetl.connectors.redis:RedisStreamSink",
        "sqlite": "asyncetl.connectors.sqlite:SqliteSink",
    },
    "checkpoints": {
        "duckdb": "asyncetl.connectors.duckdb:DuckDBCheckpointStore",
        "iceberg": "asyncetl.connectors.iceberg:IcebergCheckpointStore",
        "json": "asyncetl:JsonFileCheckpointStore",
        "memory": "asyncetl:MemoryCheckpointStore",
        "parquet": "asyncetl.connectors.parquet:ParquetCheckpointStore",
        "postgres": "asyncetl.connectors.postgres:PostgresCheckpointStore",
        "sqlite": "asyncetl.connectors.sqlite:SqliteCheckpointStore",
    },
    "dead_letters": {
        "duckdb": "asyncetl.connectors.duckdb:DuckDBDeadLetterStore",
        "jsonl": "asyncetl.connectors.files:JsonlDeadLetterStore",
        "memory": "asyncetl:MemoryDeadLetterStore",
        "postgres": "asyncetl.connectors.postgres:PostgresDeadLetterStore",
        "sqlite": "asyncetl.connectors.sqlite:SqliteDeadLetterStore",
    },
}

#: The connector packages that need an optional extra, by the extra's name.
_EXTRAS = {
    f"asyncetl.connectors.{extra}": extra
    for extra in ("duckdb", "iceberg", "kafka", "nats", "parquet", "redis")
}

_BASES: dict[str, type] = {
    "source": Source,
    "sink": Sink,
    "checkpoints": CheckpointStore,
    "dead_letters": DeadLetterStore,
}
_TABLES = ("pipeline", "source", "transforms", "sink", "checkpoints", "dead_letters", "logging")
_PIPELINE_PARTS = frozenset({"source", "sink", "transforms", "checkpoints", "dead_letters"})
_ATTRIBUTE_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _require_extra(target: str, type_name: str, where: str, key: str) -> None:
    """Refuse a built-in type whose extra is not installed, saying which to install.

    :raises ConfigError: the connector's client library cannot be imported.
    """
    module = target.partition(":")[0]
    extra = _EXTRAS.get(module)
    if extra is None:
        return
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if not missing or missing == "asyncetl":
            return  # not a missing extra: import_attribute reports it as it is
        raise ConfigError(
            f"type {type_name!r} needs the package {missing!r}, which is not installed; "
            f"install it with: pip install 'asyncetl[{extra}]'",
            where=where,
            key=key,
        ) from None


def register(kind: Kind, type_name: str, target: str) -> None:
    """Make ``type = "<type_name>"`` in a ``[<kind>]`` table mean ``target`` (``module:Class``).

    :raises ConfigError: ``kind`` is not one of the spec's connector tables.
    """
    if kind not in REGISTRY:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {', '.join(REGISTRY)}")
    REGISTRY[kind][type_name] = target


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """The ``[logging]`` table.

    :param format: ``console`` for people, ``json`` for log collectors.
    :param level: ``debug``, ``info``, ``warning``, ``error`` or ``critical``.
    """

    format: LogFormat = "console"
    level: str = "info"

    def __post_init__(self) -> None:
        if self.level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"expected one of {', '.join(map(repr, LOG_LEVELS))}, got {self.level!r}",
                key="level",
            )


# -- public entry points ---------------------------------------------------------------


@hiding_secrets
def build_pipeline(
    spec: str | os.PathLike[str], *, using: Collection[str] | None = None
) -> Pipeline:
    """Build the pipeline a spec describes, without running or opening anything.

    :param spec: a TOML spec file, or ``module:attribute`` naming a Pipeline or a
        zero-argument function returning one (use :func:`load_pipeline` for an
        async function).
    :param using: the parts the caller will open (default: all). Another part may
        name an unset ``${VAR}``: it is then a stand-in, with the stage name the
        part would have, that raises the unset variable's error when opened or used.
    :raises ConfigError: the spec is unreadable or wrong; the message names file and key.
    """
    if is_attribute_spec(spec):
        return _pipeline_from_attribute(str(spec))
    document = read_toml(Path(spec))
    needed = None if using is None else frozenset(using)
    return _Builder(str(spec), Path(spec), needed).pipeline(document)


async def load_pipeline(
    spec: str | os.PathLike[str], *, using: Collection[str] | None = None
) -> Pipeline:
    """Like :func:`build_pipeline`, and also awaits an async ``module:attribute`` factory.

    :raises ConfigError: the spec is unreadable or wrong; the message names file and key.
    """
    if not is_attribute_spec(spec):
        return build_pipeline(spec, using=using)
    with secrets_hidden():
        target = import_attribute(str(spec), str(spec), None)
        if isinstance(target, Pipeline):
            return target
        result = _call_factory(str(spec), target)
        if inspect.isawaitable(result):
            result = await result
        return _expect_pipeline(str(spec), result)


@hiding_secrets
def logging_settings(spec: str | os.PathLike[str]) -> LoggingSettings:
    """The ``[logging]`` table of a spec file; defaults for ``module:attribute`` specs.

    :raises ConfigError: the file is unreadable, not TOML, or its ``[logging]`` table is wrong.
    """
    if is_attribute_spec(spec):
        return LoggingSettings()
    where = str(spec)
    table = read_toml(Path(spec)).get("logging", {})
    table = substitute(_expect_table(where, "logging", table), where, "logging", mark=True)
    settings = _construct(where, "logging", LoggingSettings, table)
    assert isinstance(settings, LoggingSettings)
    return settings


# -- reading -----------------------------------------------------------------------------


def is_attribute_spec(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` names a ``module:attribute`` pipeline rather than a spec file."""
    text = str(spec)
    return (
        not text.endswith(".toml")
        and _ATTRIBUTE_SPEC.fullmatch(text) is not None
        and not Path(text).exists()
    )


# -- building ----------------------------------------------------------------------------


class _Builder:
    """Builds one spec file's pipeline; remembers the file for error messages."""

    def __init__(self, where: str, path: Path, using: frozenset[str] | None = None) -> None:
        self.where = where
        self.using = using
        make_importable(path.resolve().parent)

    def pipeline(self, document: dict[str, Any]) -> Pipeline:
        for key in document:
            if key not in _TABLES:
                raise ConfigError(
                    f"unknown table; expected one of {', '.join(_TABLES)}",
                    where=self.where,
                    key=key,
                )
        settings = self._table(document, "pipeline", required=True)
        logging_table = self._table(document, "logging", required=False)
        _construct(self.where, "logging", LoggingSettings, logging_table)
        parts: dict[str, Any] = {
            "source": self._connector(document, "source", required=True),
            "transforms": self._transforms(document.get("transforms", [])),
            "sink": self._connector(document, "sink", required=True),
            "checkpoints": self._connector(document, "checkpoints", required=False),
            "dead_letters": self._connector(document, "dead_letters", required=False),
        }
        pipeline = _construct(self.where, "pipeline", Pipeline, settings, provided=parts)
        assert isinstance(pipeline, Pipeline)
        return pipeline

    def _table(self, document: dict[str, Any], key: str, *, required: bool) -> dict[str, Any]:
        if key not in document:
            if required:
                raise ConfigError(f"the [{key}] table is missing", where=self.where, key=key)
            return {}
        table = _expect_table(self.where, key, document[key])
        result: dict[str, Any] = substitute(table, self.where, key, mark=True)
        return result

    def _connector(self, document: dict[str, Any], kind: str, *, required: bool) -> object:
        if kind not in document and not required:
            return None
        try:
            table = dict(self._table(document, kind, required=True))
        except UnsetVariable as exc:
            if self.using is None or kind in self.using:
                raise
            return self._unopened(document, kind, exc)
        type_name = table.pop("type", None)
        factory = self._connector_factory(kind, type_name)
        instance = _construct(self.where, kind, factory, table)
        if not isinstance(instance, _BASES[kind]):
            raise ConfigError(
                f"{type_name} made a {type(instance).__name__}, not a {_BASES[kind].__name__}",
                where=self.where,
                key=f"{kind}.type",
            )
        return instance

    def _unopened(self, document: dict[str, Any], kind: str, error: UnsetVariable) -> object:
        """A stand-in for part ``kind``, which names an unset variable and will not be opened.

        It keeps the name the part would have, read with the unset variables left
        as written, as the checkpoint key needs the source's name.
        """
        table = dict(substitute(document[kind], self.where, kind, mark=True, keep_unset=True))
        try:
            factory = self._connector_factory(kind, table.pop("type", None))
        except ConfigError:
            raise error from None
        try:
            name = getattr(_construct(self.where, kind, factory, table), "name", None)
        except ConfigError:  # a value it parses is an unset variable: take the name as given
            name = table.get("name", _default(factory, "name"))
        known = name if isinstance(name, str) and "${" not in name else None
        return unopened(kind, error, factory, known)

    def _connector_factory(self, kind: str, type_name: object) -> Callable[..., object]:
        key = f"{kind}.type"
        choices = f"one of {', '.join(sorted(REGISTRY[kind]))} or 'module:Class'"
        if type_name is None:
            raise ConfigError(
                f"required key is missing; expected {choices}", where=self.where, key=key
            )
        if not isinstance(type_name, str):
            raise ConfigError(
                f"expected a string, got {show(type_name)}", where=self.where, key=key
            )
        target = REGISTRY[kind].get(type_name)
        if target is None and ":" not in type_name:
            raise ConfigError(
                f"unknown {kind} type {type_name!r}; expected {choices}", where=self.where, key=key
            )
        if target is not None:
            _require_extra(target, type_name, self.where, key)
        factory = import_attribute(target or type_name, self.where, key)
        base = _BASES[kind]
        if isinstance(factory, type) and not issubclass(factory, base):
            raise ConfigError(f"{type_name} is not a {base.__name__}", where=self.where, key=key)
        if not callable(factory):
            raise ConfigError(f"{type_name} is not a class", where=self.where, key=key)
        return factory

    def _transforms(self, tables: object) -> list[Transform]:
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ConfigError(
                f"expected an array of tables ([[transforms]]), got {show(tables)}",
                where=self.where,
                key="transforms",
            )
        return [self._transform(i, table) for i, table in enumerate(tables)]

    def _transform(self, index: int, table: dict[str, Any]) -> Transform:
        key = f"transforms[{index}]"
        try:
            table = dict(substitute(table, self.where, key, mark=True))
        except UnsetVariable as exc:
            if self.using is None or "transforms" in self.using:
                raise
            return self._unrun_transform(key, table, exc)
        fn = self._transform_function(key, table.pop("function", None))
        transform = _construct(self.where, key, Transform, table, provided={"fn": fn})
        assert isinstance(transform, Transform)
        return transform

    def _transform_function(self, key: str, function: object) -> Callable[..., object]:
        if not isinstance(function, str):
            problem = (
                "required key is missing"
                if function is None
                else f"expected a string, got {show(function)}"
            )
            raise ConfigError(problem, where=self.where, key=f"{key}.function")
        fn = import_attribute(function, self.where, f"{key}.function")
        if not callable(fn):
            raise ConfigError(
                f"{function} is not a function", where=self.where, key=f"{key}.function"
            )
        return cast(Callable[..., object], fn)

    def _unrun_transform(self, key: str, table: dict[str, Any], error: UnsetVariable) -> Transform:
        """A stand-in for a transform that names an unset variable and will not be run.

        Commands that only read state (``dlq``, ``status``, ``cdc``) need its stage
        name, nothing else; calling it raises the unset variable's error.
        """
        table = dict(substitute(table, self.where, key, mark=True, keep_unset=True))
        function, name = table.get("function"), table.get("name")
        if "${" in f"{function}{name or ''}":
            raise error  # the stage name depends on the variable
        if not isinstance(name, str):
            name = Transform(self._transform_function(key, function)).name

        def unset(*_: object) -> object:
            raise error

        return Transform(unset, name=name)


def _default(factory: Callable[..., object], parameter: str) -> object:
    """The default value of ``factory``'s ``parameter``, or ``None``."""
    try:
        found = inspect.signature(factory).parameters.get(parameter)
    except (TypeError, ValueError):
        return None
    return None if found is None or found.default is inspect.Parameter.empty else found.default


def _expect_table(where: str, key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"expected a table, got {show(value)}", where=where, key=key)
    return value


# -- module:attribute specs ---------------------------------------------------------------


def _pipeline_from_attribute(spec: str) -> Pipeline:
    target = import_attribute(spec, spec, None)
    if isinstance(target, Pipeline):
        return target
    if inspect.iscoroutinefunction(target):
        raise ConfigError(
            "is an async function; use 'await asyncetl.spec.load_pipeline(...)'",
            where=spec,
        )
    result = _call_factory(spec, target)
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise ConfigError(
            "returned an awaitable; use 'await asyncetl.spec.load_pipeline(...)'", where=spec
        )
    return _expect_pipeline(spec, result)


def _call_factory(spec: str, target: object) -> object:
    if not callable(target):
        raise ConfigError(
            f"names a {type(target).__name__}, not a Pipeline or a function returning one",
            where=spec,
        )
    try:
        inspect.signature(target).bind()
    except TypeError:
        raise ConfigError("must be callable without arguments", where=spec) from None
    except ValueError:
        pass  # no signature to inspect (some builtins); just call it
    return target()


def _expect_pipeline(spec: str, result: object) -> Pipeline:
    if not isinstance(result, Pipeline):
        raise ConfigError(f"returned a {type(result).__name__}, not a Pipeline", where=spec)
    return result


# -- constructor keywords and their types ----------------------------------------------


def _construct(
    where: str,
    key: str,
    factory: Callable[..., object],
    table: Mapping[str, Any],
    *,
    provided: Mapping[str, object] | None = None,
) -> object:
    """Call ``factory`` with ``table``'s keys as keywords, checked against its signature."""
    provided = provided or {}
    name = getattr(factory, "__qualname__", repr(factory))
    parameters: Mapping[str, inspect.Parameter]
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    expected = hints(factory)
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    settable = {
        n: p
        for n, p in parameters.items()
        if n not in provided and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    kwargs: dict[str, object] = dict(provided)
    for item, value in table.items():
        if item not in settable and not open_ended:
            accepted = ", ".join(sorted(settable)) or "nothing"
            raise ConfigError(
                f"unknown key; {name} accepts {accepted}", where=where, key=f"{key}.{item}"
            )
        kwargs[item] = checked(value, expected.get(item, Any), where, f"{key}.{item}")
    for item, parameter in settable.items():
        if parameter.default is parameter.empty and item not in table:
            raise ConfigError(
                f"required key is missing ({name} needs it)", where=where, key=f"{key}.{item}"
            )
    try:
        return factory(**kwargs)
    except ConfigError as exc:
        # A cause whose text shows a secret is dropped from the chain (debug logs print it).
        raise _rewrapped(exc, where, key) from (None if shows_secret(str(exc)) else exc)
    except Exception as exc:
        raise ConfigError(
            f"{name} could not be created: {type(exc).__name__}: {redact(str(exc))}",
            where=where,
            key=key,
        ) from (None if shows_secret(str(exc)) else exc)


def _rewrapped(exc: ConfigError, where: str, key: str) -> ConfigError:
    """A constructor's ConfigError, re-addressed to the spec file and table."""
    message = str(exc)
    if exc.where and exc.key:
        message = message.removeprefix(f"{exc.where}: {exc.key}: ")
    elif exc.where or exc.key:
        message = message.removeprefix(f"{exc.where or exc.key}: ")
    message = redact(message)
    if exc.key is None:
        return ConfigError(message, where=where, key=key)
    if key == "pipeline" and exc.key in _PIPELINE_PARTS:
        return ConfigError(message, where=where, key=exc.key)
    return ConfigError(message, where=where, key=f"{key}.{exc.key}")
