"""Secrets kept out of spec files: env files, ``${file:…}`` and hiding what they gave.

A value that a spec got from an env file (:func:`use_env_file`, the command
line's ``--env-file``) or from a ``${file:/path}`` reference is remembered as a
secret (:func:`asyncetl.core.redact.remember_secret`): :func:`redact` replaces
it, and the password of any URL, by ``***`` in every message the spec layer
shows, and so does the log setup in every log line. Env-file values are only looked up for
``${VAR}`` references; they are not put into ``os.environ``, so child processes
never inherit them.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from asyncetl.core.errors import ConfigError
from asyncetl.core.redact import redact, redact_url, remember_secret

__all__ = [
    "env_file_value",
    "hiding_secrets",
    "read_env_file",
    "read_secret_file",
    "redact",
    "redacted_error",
    "remember_secret",
    "secrets_hidden",
    "show_text",
    "shows_secret",
    "use_env_file",
]

P = ParamSpec("P")
T = TypeVar("T")

_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}

_lock = threading.Lock()
_env_values: dict[str, str] = {}


# -- env files ---------------------------------------------------------------------------


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of a dotenv-style file.

    Blank lines and lines starting with ``#`` are skipped; ``export`` before a
    key is allowed; a value may be in single quotes (taken as written) or double
    quotes (``\\n``, ``\\t``, ``\\"`` and ``\\\\`` escapes); an unquoted value
    ends at `` #`` and is stripped.

    :raises ConfigError: the file is unreadable, or a line is not ``KEY=VALUE``
        (naming the line, never showing it: it may hold a secret).
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read the env file: {reason}", where=where) from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        value = _value(match.group(2)) if match else None
        if match is None or value is None:
            raise ConfigError(
                f"line {number} is not KEY=VALUE (a quoted value must close its quote)",
                where=where,
            )
        values[match.group(1)] = value
    return values


def _value(raw: str) -> str | None:
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = _closing_quote(raw, quote)
        if end is None or raw[end + 1 :].strip()[:1] not in ("", "#"):
            return None
        body = raw[1:end]
        if quote == "'":
            return body
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def _closing_quote(raw: str, quote: str) -> int | None:
    index = 1
    while index < len(raw):
        if raw[index] == "\\" and quote == '"':
            index += 2
            continue
        if raw[index] == quote:
            return index
        index += 1
    return None


def use_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Let ``${VAR}`` in spec files read the variables of an env file, as secrets.

    A variable set in the process environment wins over the file. The values
    are not exported to ``os.environ``.

    :returns: the file's variables.
    :raises ConfigError: the file is unreadable or malformed.
    """
    values = read_env_file(path)
    with _lock:
        _env_values.update(values)
    return values


def env_file_value(name: str) -> str | None:
    """The value an env file gave ``name``, remembered as a secret once read."""
    with _lock:
        value = _env_values.get(name)
    if value is not None:
        remember_secret(value)
    return value


# -- ${file:...} -------------------------------------------------------------------------


def read_secret_file(path: str, where: str, key: str) -> str:
    """The content of the file at ``path`` without its trailing newline, remembered as a secret.

    :raises ConfigError: the file is unreadable, naming spec file, key and path.
    """
    try:
        content = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the secret file {path!r}: {exc.strerror}", where=where, key=key
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"the secret file {path!r} is not UTF-8 text", where=where, key=key
        ) from None
    content = content.removesuffix("\n").removesuffix("\r")
    remember_secret(content)
    return content


# -- hiding ------------------------------------------------------------------------------


def redacted_error(exc: ConfigError) -> ConfigError:
    """``exc`` itself when it shows no secret, else a copy that does not (and no cause)."""
    message = str(exc)
    if not shows_secret(message):
        return exc
    prefix = ": ".join(part for part in (exc.where, exc.key) if part)
    body = message.removeprefix(f"{prefix}: ") if prefix else message
    return ConfigError(redact(body), where=exc.where and redact(exc.where), key=exc.key)


def shows_secret(text: str) -> bool:
    """Whether :func:`redact` would change ``text``."""
    return redact(text) != text


@contextmanager
def secrets_hidden() -> Iterator[None]:
    """Re-raise a ConfigError raised inside with its secrets hidden, and without its cause then."""
    try:
        yield
    except ConfigError as exc:
        error = redacted_error(exc)
        if error is exc:
            raise
        raise error from None


def hiding_secrets(function: Callable[P, T]) -> Callable[P, T]:
    """``function``, its ConfigErrors passed through :func:`secrets_hidden`."""

    @functools.wraps(function)
    def hiding(*args: P.args, **kwargs: P.kwargs) -> T:
        with secrets_hidden():
            return function(*args, **kwargs)

    return hiding


def show_text(value: str) -> str:
    """A string value as a message may show it: redacted, even if it is not a whole URL."""
    return redact(redact_url(value))
