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
  environment (the default also applies when ``VAR`` is empty); ``$${`` is a
  literal ``${``. Where a key expects a number or a boolean, substituted text
  is read as one: ``max_batch_size = "${BATCH_SIZE:-500}"``.
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
import sys
import tomllib
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Literal, TypeAlias, TypeVar, Union, get_args, get_origin, get_type_hints

from asyncetl.core import (
    CheckpointStore,
    ConfigError,
    DeadLetterStore,
    Pipeline,
    Sink,
    Source,
    Transform,
)
from asyncetl.observe import LOG_LEVELS, LogFormat

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
        "jsonl": "asyncetl.connectors.files:JsonlSource",
        "list": "asyncetl.core:ListSource",
    },
    "sink": {
        "jsonl": "asyncetl.connectors.files:JsonlSink",
        "null": "asyncetl.core:NullSink",
        "sqlite": "asyncetl.connectors.sqlite:SqliteSink",
    },
    "checkpoints": {
        "json": "asyncetl.core:JsonFileCheckpointStore",
        "memory": "asyncetl.core:MemoryCheckpointStore",
        "sqlite": "asyncetl.connectors.sqlite:SqliteCheckpointStore",
    },
    "dead_letters": {
        "jsonl": "asyncetl.connectors.files:JsonlDeadLetterStore",
        "memory": "asyncetl.core:MemoryDeadLetterStore",
        "sqlite": "asyncetl.connectors.sqlite:SqliteDeadLetterStore",
    },
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
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


def build_pipeline(spec: str | os.PathLike[str]) -> Pipeline:
    """Build the pipeline a spec describes, without running or opening anything.

    :param spec: a TOML spec file, or ``module:attribute`` naming a Pipeline or a
        zero-argument function returning one (use :func:`load_pipeline` for an
        async function).
    :raises ConfigError: the spec is unreadable or wrong; the message names file and key.
    """
    if _is_attribute_spec(spec):
        return _pipeline_from_attribute(str(spec))
    document = _read(Path(spec))
    return _Builder(str(spec), Path(spec)).pipeline(document)


async def load_pipeline(spec: str | os.PathLike[str]) -> Pipeline:
    """Like :func:`build_pipeline`, and also awaits an async ``module:attribute`` factory.

    :raises ConfigError: the spec is unreadable or wrong; the message names file and key.
    """
    if not _is_attribute_spec(spec):
        return build_pipeline(spec)
    target = _import_attribute(str(spec), str(spec), None)
    if isinstance(target, Pipeline):
        return target
    result = _call_factory(str(spec), target)
    if inspect.isawaitable(result):
        result = await result
    return _expect_pipeline(str(spec), result)


def logging_settings(spec: str | os.PathLike[str]) -> LoggingSettings:
    """The ``[logging]`` table of a spec file; defaults for ``module:attribute`` specs.

    :raises ConfigError: the file is unreadable, not TOML, or its ``[logging]`` table is wrong.
    """
    if _is_attribute_spec(spec):
        return LoggingSettings()
    where = str(spec)
    table = _read(Path(spec)).get("logging", {})
    table = _substitute(_expect_table(where, "logging", table), where, "logging")
    settings = _construct(where, "logging", LoggingSettings, table)
    assert isinstance(settings, LoggingSettings)
    return settings


# -- reading -----------------------------------------------------------------------------


def _is_attribute_spec(spec: str | os.PathLike[str]) -> bool:
    text = str(spec)
    return (
        not text.endswith(".toml")
        and _ATTRIBUTE_SPEC.fullmatch(text) is not None
        and not Path(text).exists()
    )


def _read(path: Path) -> dict[str, Any]:
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the spec file: {exc.strerror}", where=where) from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the spec file is not UTF-8 text: {exc.reason}", where=where) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", where=where) from exc


class _Substituted(str):
    """Text made by ``${VAR}`` substitution: read as a number or boolean where one is expected."""

    __slots__ = ()


def _substitute(value: Any, where: str, key: str) -> Any:
    """``value`` with ``${VAR}`` references replaced in every string it holds."""
    if isinstance(value, str):
        if _REFERENCE.search(value) is None:
            return value
        return _Substituted(_REFERENCE.sub(lambda match: _lookup(match, where, key), value))
    if isinstance(value, list):
        return [_substitute(item, where, f"{key}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {k: _substitute(item, where, f"{key}.{k}") for k, item in value.items()}
    return value


def _lookup(match: re.Match[str], where: str, key: str) -> str:
    body = match.group(1)
    if body is None:  # "$${" escapes a literal "${"
        return "${"
    name, has_default, default = body.partition(":-")
    if not _VARIABLE.fullmatch(name):
        raise ConfigError(
            f"malformed reference ${{{body}}}; write ${{NAME}} or ${{NAME:-default}}",
            where=where,
            key=key,
        )
    value = os.environ.get(name)
    if value:
        return value
    if has_default:
        return default
    if value is None:
        raise ConfigError(
            f"environment variable {name} is not set; set it or write ${{{name}:-default}}",
            where=where,
            key=key,
        )
    return value


# -- building ----------------------------------------------------------------------------


class _Builder:
    """Builds one spec file's pipeline; remembers the file for error messages."""

    def __init__(self, where: str, path: Path) -> None:
        self.where = where
        _make_importable(path.resolve().parent)

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
        result: dict[str, Any] = _substitute(table, self.where, key)
        return result

    def _connector(self, document: dict[str, Any], kind: str, *, required: bool) -> object:
        if kind not in document and not required:
            return None
        table = dict(self._table(document, kind, required=True))
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

    def _connector_factory(self, kind: str, type_name: object) -> Callable[..., object]:
        key = f"{kind}.type"
        choices = f"one of {', '.join(sorted(REGISTRY[kind]))} or 'module:Class'"
        if type_name is None:
            raise ConfigError(
                f"required key is missing; expected {choices}", where=self.where, key=key
            )
        if not isinstance(type_name, str):
            raise ConfigError(
                f"expected a string, got {_show(type_name)}", where=self.where, key=key
            )
        target = REGISTRY[kind].get(type_name)
        if target is None and ":" not in type_name:
            raise ConfigError(
                f"unknown {kind} type {type_name!r}; expected {choices}", where=self.where, key=key
            )
        factory = _import_attribute(target or type_name, self.where, key)
        base = _BASES[kind]
        if isinstance(factory, type) and not issubclass(factory, base):
            raise ConfigError(f"{type_name} is not a {base.__name__}", where=self.where, key=key)
        if not callable(factory):
            raise ConfigError(f"{type_name} is not a class", where=self.where, key=key)
        return factory

    def _transforms(self, tables: object) -> list[Transform]:
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ConfigError(
                f"expected an array of tables ([[transforms]]), got {_show(tables)}",
                where=self.where,
                key="transforms",
            )
        return [self._transform(i, table) for i, table in enumerate(tables)]

    def _transform(self, index: int, table: dict[str, Any]) -> Transform:
        key = f"transforms[{index}]"
        table = dict(_substitute(table, self.where, key))
        function = table.pop("function", None)
        if not isinstance(function, str):
            problem = (
                "required key is missing"
                if function is None
                else f"expected a string, got {_show(function)}"
            )
            raise ConfigError(problem, where=self.where, key=f"{key}.function")
        fn = _import_attribute(function, self.where, f"{key}.function")
        if not callable(fn):
            raise ConfigError(
                f"{function} is not a function", where=self.where, key=f"{key}.function"
            )
        transform = _construct(self.where, key, Transform, table, provided={"fn": fn})
        assert isinstance(transform, Transform)
        return transform


def _expect_table(where: str, key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"expected a table, got {_show(value)}", where=where, key=key)
    return value


def _make_importable(*directories: Path) -> None:
    """Put the current directory first on ``sys.path`` (as ``python -m`` does), then these."""
    for directory in (*map(str, reversed(directories)), os.getcwd()):
        if directory not in sys.path:
            sys.path.insert(0, directory)


def _import_attribute(name: str, where: str, key: str | None) -> object:
    """The object ``module:attr.path`` names."""
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"expected 'module:name', got {name!r}", where=where, key=key)
    _make_importable()
    try:
        target: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigError(f"module {missing!r} not found", where=where, key=key) from exc
        raise _import_failed(module_name, exc, where, key) from exc
    except Exception as exc:
        raise _import_failed(module_name, exc, where, key) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"module {module_name!r} has no attribute {attribute!r}", where=where, key=key
            ) from None
    return target


def _import_failed(module: str, exc: BaseException, where: str, key: str | None) -> ConfigError:
    return ConfigError(
        f"importing module {module!r} failed: {type(exc).__name__}: {exc}", where=where, key=key
    )


# -- module:attribute specs ---------------------------------------------------------------


def _pipeline_from_attribute(spec: str) -> Pipeline:
    target = _import_attribute(spec, spec, None)
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
    hints = _hints(factory)
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
        kwargs[item] = _checked(value, hints.get(item, Any), where, f"{key}.{item}")
    for item, parameter in settable.items():
        if parameter.default is parameter.empty and item not in table:
            raise ConfigError(
                f"required key is missing ({name} needs it)", where=where, key=f"{key}.{item}"
            )
    try:
        return factory(**kwargs)
    except ConfigError as exc:
        raise _rewrapped(exc, where, key) from exc
    except Exception as exc:
        raise ConfigError(
            f"{name} could not be created: {type(exc).__name__}: {exc}", where=where, key=key
        ) from exc


def _rewrapped(exc: ConfigError, where: str, key: str) -> ConfigError:
    """A constructor's ConfigError, re-addressed to the spec file and table."""
    message = str(exc)
    if exc.where and exc.key:
        message = message.removeprefix(f"{exc.where}: {exc.key}: ")
    elif exc.where or exc.key:
        message = message.removeprefix(f"{exc.where or exc.key}: ")
    if exc.key is None:
        return ConfigError(message, where=where, key=key)
    if key == "pipeline" and exc.key in _PIPELINE_PARTS:
        return ConfigError(message, where=where, key=exc.key)
    return ConfigError(message, where=where, key=f"{key}.{exc.key}")


def _hints(factory: Callable[..., object]) -> dict[str, Any]:
    # A class's hints are its __init__'s; mypy frowns on reaching __init__ through a value.
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        return get_type_hints(target)
    except Exception:
        # An annotation that cannot be resolved (a TYPE_CHECKING-only import) is not
        # checked; every resolvable one still is.
        return _hints_one_by_one(target)


def _hints_one_by_one(target: Callable[..., object]) -> dict[str, Any]:
    namespace = dict(getattr(inspect.getmodule(target), "__dict__", {}))
    hints: dict[str, Any] = {}
    for name, annotation in getattr(target, "__annotations__", {}).items():
        try:
            hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation  # noqa: S307
        except Exception:  # noqa: S112 - unresolvable means unchecked
            continue
    return hints


def _checked(value: object, hint: object, where: str, key: str) -> object:
    if isinstance(value, _Substituted) and not _accepts(hint, value):
        value = next((v for v in _readings(value) if _accepts(hint, v)), value)
    if not _accepts(hint, value):
        raise ConfigError(f"expected {_describe(hint)}, got {_show(value)}", where=where, key=key)
    value = _plain(value)
    if isinstance(value, list) and get_origin(hint) is tuple:
        return tuple(value)
    return value


def _readings(text: str) -> list[object]:
    """What substituted text may stand for besides a string: a boolean or a number."""
    word = text.strip()
    readings: list[object] = []
    if word in ("true", "false"):
        readings.append(word == "true")
    for number in (int, float):
        try:
            readings.append(number(word))
        except ValueError:
            continue
    return readings


def _plain(value: object) -> object:
    """``value`` with substituted text turned back into plain ``str`` for the constructor."""
    if isinstance(value, _Substituted):
        return str(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _accepts(hint: Any, value: object) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any or isinstance(hint, TypeVar) or hint is object:
        return True
    if origin in (Union, types.UnionType):
        return any(_accepts(arg, value) for arg in args)
    if origin is Literal:
        return any(type(value) is type(arg) and value == arg for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if _is_path(hint):
        return isinstance(value, str)
    if origin in (list, tuple, Sequence, Iterable) or hint in (list, tuple):
        item = args[0] if args else Any
        return isinstance(value, list) and all(_accepts(item, v) for v in value)
    if origin in (dict, Mapping) or hint is dict:
        key_hint, item = args if len(args) == 2 else (Any, Any)
        return isinstance(value, dict) and all(
            _accepts(key_hint, k) and _accepts(item, v) for k, v in value.items()
        )
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a typing construct we do not model: the constructor judges


def _is_path(hint: Any) -> bool:
    cls = get_origin(hint) or hint
    return isinstance(cls, type) and issubclass(cls, os.PathLike | PurePath)


_PLURALS = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
_SINGULARS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        parts = [_describe(arg) for arg in args if arg is not type(None)]
        return " or ".join(dict.fromkeys(parts))
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if hint in _SINGULARS:
        return _SINGULARS[hint]
    if _is_path(hint):
        return "a string"
    if origin in (list, tuple, Sequence, Iterable) or hint in (list, tuple):
        item = args[0] if args else Any
        return "a list" + (f" of {_PLURALS[item]}" if item in _PLURALS else "")
    if origin in (dict, Mapping) or hint is dict:
        item = args[1] if len(args) == 2 else Any
        return "a table" + (f" of {_PLURALS[item]}" if item in _PLURALS else "")
    return f"a {getattr(hint, '__name__', hint)}"


def _show(value: object) -> str:
    """A value, briefly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
