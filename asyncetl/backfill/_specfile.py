"""Reading backfill and flow TOML files: variables, imports and key checks.

Follows the rules of :mod:`asyncetl.spec`: ``${VAR}`` and ``${VAR:-default}``
come from the environment (``$${`` is a literal ``${``), relative paths are
relative to the current directory, and ``module:function`` names are imported
with the current directory and the file's directory on ``sys.path``. Every
problem is a :class:`ConfigError` naming file and key.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from asyncetl.core.errors import ConfigError

__all__ = ["bind_params", "check_keys", "import_function", "read_toml", "substitute", "typed"]

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML document at ``path``.

    :raises ConfigError: unreadable, not UTF-8, or not TOML.
    """
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", where=where) from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the file is not UTF-8 text: {exc.reason}", where=where) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", where=where) from exc


def substitute(value: Any, where: str, key: str, variables: Mapping[str, str] | None = None) -> Any:
    """``value`` with ``${VAR}`` replaced in every string, from ``variables`` then the environment.

    :raises ConfigError: a malformed reference or an unset variable without default.
    """
    if isinstance(value, str):
        return _REFERENCE.sub(lambda match: _lookup(match, where, key, variables or {}), value)
    if isinstance(value, list):
        return [substitute(item, where, f"{key}[{i}]", variables) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {
            k: substitute(item, where, f"{key}.{k}" if key else k, variables)
            for k, item in value.items()
        }
    return value


def _lookup(match: re.Match[str], where: str, key: str, variables: Mapping[str, str]) -> str:
    body = match.group(1)
    if body is None:
        return "${"
    name, has_default, default = body.partition(":-")
    if not _VARIABLE.fullmatch(name):
        raise ConfigError(
            f"malformed reference ${{{body}}}; write ${{NAME}} or ${{NAME:-default}}",
            where=where,
            key=key,
        )
    value = variables.get(name, os.environ.get(name))
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


def check_keys(table: Mapping[str, Any], allowed: set[str], where: str, key: str) -> None:
    """Reject keys of ``table`` not in ``allowed``, naming the first one and the allowed ones."""
    for name in table:
        if name not in allowed:
            raise ConfigError(
                f"unknown key {name!r}; expected one of {', '.join(sorted(allowed))}",
                where=where,
                key=f"{key}.{name}" if key else name,
            )


def typed(
    table: Mapping[str, Any], name: str, kinds: type | tuple[type, ...], where: str, key: str
) -> Any:
    """``table[name]`` (or ``None`` when absent), checked to be of ``kinds``."""
    value = table.get(name)
    if value is None:
        return None
    bad_bool = isinstance(value, bool) and bool not in (
        kinds if isinstance(kinds, tuple) else (kinds,)
    )
    if bad_bool or not isinstance(value, kinds):
        names = (
            kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
        )
        raise ConfigError(f"expected {names}, got {value!r}", where=where, key=f"{key}.{name}")
    return value


def import_function(name: str, where: str, key: str, directory: Path) -> Callable[..., Any]:
    """The async function ``module:function`` names.

    :raises ConfigError: a malformed name, a missing module or attribute, a
        failing import, or an object that is not an async function.
    """
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"expected 'module:function', got {name!r}", where=where, key=key)
    for path in (str(directory), os.getcwd()):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        target: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(f"module {exc.name!r} not found", where=where, key=key) from exc
        raise ConfigError(
            f"importing module {module_name!r} failed: {exc}", where=where, key=key
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}",
            where=where,
            key=key,
        ) from exc
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ConfigError(
                f"module {module_name!r} has no attribute {attribute!r}", where=where, key=key
            )
    if not inspect.iscoroutinefunction(target):
        raise ConfigError(f"{name} is not an async function", where=where, key=key)
    return target


def bind_params(
    fn: Callable[..., Any], leading: int, params: Mapping[str, Any], where: str, key: str
) -> None:
    """Check that ``fn`` accepts ``leading`` positional arguments and ``params`` as keywords.

    :raises ConfigError: naming the mismatch.
    """
    try:
        inspect.signature(fn).bind(*([None] * leading), **params)
    except TypeError as exc:
        raise ConfigError(
            f"{fn.__qualname__} does not accept these params: {exc}", where=where, key=key
        ) from None
