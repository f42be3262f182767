"""Reading spec files: TOML, ``${VAR}`` references, ``module:name`` imports, key checks.

Shared by pipeline specs (:mod:`asyncetl.spec`), backfill specs
(:mod:`asyncetl.spec.backfill`) and flow files (:mod:`asyncetl.flow`), so that
all follow one set of rules:

- ``${VAR}`` and ``${VAR:-default}`` in any string value are replaced from the
  environment, else from an env file (:func:`asyncetl.spec.use_env_file`); the
  default also applies when ``VAR`` is empty. ``${file:/path}`` is replaced by
  the file's content without its trailing newline. ``$${`` is a literal ``${``;
  a ``${`` without its ``}`` is an error. Values from env files and
  ``${file:…}`` are secrets, hidden in every message
  (:mod:`asyncetl.spec._secrets`).
- ``module:name`` is imported with the current directory first on ``sys.path``
  (as ``python -m`` does), then the spec file's directory.
- Every problem is a :class:`~asyncetl.core.errors.ConfigError` naming the file
  and the key: ``<file>: <key>: <what is wrong>``.
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
from asyncetl.spec._secrets import env_file_value, read_secret_file, redact

__all__ = [
    "Substituted",
    "bind_params",
    "check_keys",
    "import_attribute",
    "import_function",
    "make_importable",
    "read_toml",
    "substitute",
    "typed",
    "UnsetVariable",
]

#: ``$${`` (an escaped ``${``), ``${body}``, or a ``${`` that is never closed.
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|(\$\{)")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# -- reading -----------------------------------------------------------------------------


def read_toml(path: str | os.PathLike[str], *, what: str = "spec file") -> dict[str, Any]:
    """The TOML document at ``path``.

    :param what: names the file in messages: ``cannot read the <what>: …``.
    :raises ConfigError: unreadable, not UTF-8, not TOML (with line and column), or
        nested too deeply to parse.
    """
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror}", where=where) from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the {what} is not UTF-8 text: {exc.reason}", where=where) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", where=where) from exc
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively; a spec never
        # nests deeply, so this is a damaged or hostile file, not one to read.
        raise ConfigError(
            f"the {what} nests arrays or inline tables too deeply to read", where=where
        ) from None


# -- ${VAR} references -------------------------------------------------------------------


class UnsetVariable(ConfigError):
    """A ``${VAR}`` names a variable that is not set and has no default."""


class Substituted(str):
    """Text made by ``${VAR}`` substitution: read as a number or boolean where one is expected."""

    __slots__ = ()


def substitute(
    value: Any, where: str, key: str, *, mark: bool = False, keep_unset: bool = False
) -> Any:
    """``value`` with ``${VAR}`` replaced from the environment in every string it holds.

    :param key: where ``value`` is in the file, for messages (``""`` at the top).
    :param mark: return text that had a reference as :class:`Substituted`, so a
        caller checking types may read it as a number or boolean.
    :param keep_unset: leave the reference to an unset variable as it is written,
        for a caller that only looks (a stage's name) and never uses the value.
    :raises UnsetVariable: an unset variable without default (unless ``keep_unset``).
    :raises ConfigError: a malformed reference.
    """
    if isinstance(value, str):
        if _REFERENCE.search(value) is None:
            return value
        text = _REFERENCE.sub(lambda match: _lookup(match, where, key, keep_unset), value)
        return Substituted(text) if mark else text
    if isinstance(value, list):
        return [
            substitute(item, where, f"{key}[{i}]", mark=mark, keep_unset=keep_unset)
            for i, item in enumerate(value)
        ]
    if isinstance(value, dict):
        return {
            k: substitute(item, where, f"{key}.{k}" if key else k, mark=mark, keep_unset=keep_unset)
            for k, item in value.items()
        }
    return value


def _lookup(match: re.Match[str], where: str, key: str, keep_unset: bool = False) -> str:
    body = match.group(1)
    if match.group(2) is not None:
        raise ConfigError(
            "a ${ is not closed by }; close it, or write $${ for a literal ${",
            where=where,
            key=key,
        )
    if body is None:  # "$${" escapes a literal "${"
        return "${"
    if body.startswith("file:"):
        return read_secret_file(body.removeprefix("file:"), where, key)
    name, has_default, default = body.partition(":-")
    if not _VARIABLE.fullmatch(name):
        raise ConfigError(
            f"malformed reference ${{{body}}}; write ${{NAME}}, ${{NAME:-default}} "
            "or ${file:/path}",
            where=where,
            key=key,
        )
    value = os.environ.get(name)
    if value is None:
        value = env_file_value(name)
    if value:
        return value
    if has_default:
        return default
    if value is None:
        if keep_unset:
            return match.group(0)
        raise UnsetVariable(
            f"environment variable {name} is not set; set it or write ${{{name}:-default}}",
            where=where,
            key=key,
        )
    return value


# -- module:name imports -----------------------------------------------------------------


def make_importable(*directories: Path) -> None:
    """Put the current directory first on ``sys.path`` (as ``python -m`` does), then these."""
    for directory in (*map(str, reversed(directories)), os.getcwd()):
        if directory not in sys.path:
            sys.path.insert(0, directory)


def import_attribute(
    name: str, where: str, key: str | None, *, form: str = "module:name"
) -> object:
    """The object ``module:attr.path`` names.

    :param form: how a good name looks, for the message when ``name`` is malformed.
    :raises ConfigError: a malformed name, a missing module or attribute, or a failing import.
    """
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"expected {form!r}, got {name!r}", where=where, key=key)
    make_importable()
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


def import_function(name: str, where: str, key: str, directory: Path) -> Callable[..., Any]:
    """The async function ``module:function`` names, imported also from ``directory``.

    :raises ConfigError: a malformed name, a missing module or attribute, a
        failing import, or an object that is not an async function.
    """
    make_importable(directory)
    target = import_attribute(name, where, key, form="module:function")
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


# -- keys and their types ----------------------------------------------------------------


def check_keys(table: Mapping[str, Any], allowed: set[str], where: str, key: str) -> None:
    """Reject keys of ``table`` not in ``allowed``, naming the first one and the allowed ones.

    :raises ConfigError: naming the unknown key.
    """
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
    """``table[name]`` (or ``None`` when absent), checked to be of ``kinds``.

    :raises ConfigError: the value is of another type (a boolean is not an integer).
    """
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
        raise ConfigError(
            f"expected {names}, got {redact(repr(value))}", where=where, key=f"{key}.{name}"
        )
    return value
