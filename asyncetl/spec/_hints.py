"""Checking spec values against the type hints of the constructors they are passed to.

A spec table's keys become keyword arguments; :func:`checked` accepts a value
when it fits the parameter's hint (``int``, ``float``, ``bool``, ``str``, paths,
``Literal``, unions, lists, tuples and dicts of those) and otherwise raises a
:class:`~asyncetl.core.errors.ConfigError` in words (``expected an integer, got
'7'``). Text made by ``${VAR}`` substitution (:class:`~asyncetl.spec._files.Substituted`)
is also read as a boolean or a number where the hint wants one. A typing
construct not modelled here is left to the constructor to judge.
"""

from __future__ import annotations

import inspect
import os
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from asyncetl.core.errors import ConfigError
from asyncetl.spec._files import Substituted
from asyncetl.spec._secrets import redact, show_text

__all__ = ["checked", "hints", "show"]


def hints(factory: Callable[..., object]) -> dict[str, Any]:
    """The resolvable type hints of ``factory``'s parameters (a class's: its ``__init__``'s)."""
    # mypy frowns on reaching __init__ through a value.
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        return get_type_hints(target)
    except Exception:
        # An annotation that cannot be resolved (a TYPE_CHECKING-only import) is not
        # checked; every resolvable one still is.
        return _hints_one_by_one(target)


def _hints_one_by_one(target: Callable[..., object]) -> dict[str, Any]:
    namespace = dict(getattr(inspect.getmodule(target), "__dict__", {}))
    found: dict[str, Any] = {}
    for name, annotation in getattr(target, "__annotations__", {}).items():
        try:
            found[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation  # noqa: S307
        except Exception:  # noqa: S112 - unresolvable means unchecked
            continue
    return found


def checked(value: object, hint: object, where: str, key: str) -> object:
    """``value`` checked against ``hint``, as the constructor should get it.

    A list for a tuple hint becomes a tuple; substituted text becomes a plain
    ``str``, or the number or boolean it reads as where ``hint`` wants one.

    :raises ConfigError: ``value`` does not fit ``hint``; the message names ``key``.
    """
    if isinstance(value, Substituted) and not _accepts(hint, value):
        value = next((v for v in _readings(value) if _accepts(hint, v)), value)
    if not _accepts(hint, value):
        raise ConfigError(f"expected {_describe(hint)}, got {show(value)}", where=where, key=key)
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
    if isinstance(value, Substituted):
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


def show(value: object) -> str:
    """A value, briefly, with secrets and URL passwords hidden before it is cut short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(show_text(value)) if isinstance(value, str) else redact(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."
