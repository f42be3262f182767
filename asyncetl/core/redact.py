"""Hiding secrets before they are shown: remembered values, and URL or DSN passwords.

:func:`remember_secret` keeps a value that must never be shown (what a spec
read from an env file or a mounted secret file); :func:`redact` hides those
and every URL password in a text, :func:`redact_values` in every string of a
log event. The log setup applies it to every line, console and JSON alike.

Connectors that take credentials in a URL (PostgreSQL, Redis, NATS) show it
through their own helper, built on these: :func:`redact_url` for one URL,
:func:`redact_urls` for free text that may hold some, and
:func:`misplaced_userinfo` to refuse a URL whose password holds an unescaped
``/``, ``?`` or ``#``, which every URL parser reads as the end of the authority
(so part of the password would become a host, a port or a database name).

The userinfo is taken to end at the LAST ``@`` after the scheme: a password may
hold any character, a host none of ``@``. When that swallows an ``@`` of a
query or path as well, more is hidden than needed, never less.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "REDACTED",
    "misplaced_userinfo",
    "redact",
    "redact_url",
    "redact_urls",
    "redact_values",
    "remember_secret",
]

REDACTED = "***"

_lock = threading.Lock()
#: Longest first, so that a secret containing another is hidden whole.
_secrets: list[str] = []

#: A scheme and at least one slash: ``postgresql://``, or the typo ``redis:/``.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/+")
#: A URL inside free text: from its scheme to the next space or quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/+[^\s'\"]*")
#: Query parameters whose value is a credential (libpq's, redis-py's, common API ones).
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:password|passwd|pwd|pass|sslpassword|secret|token|access_token"
    r"|api_?key|auth)=)[^&;\s'\"]*"
)


def redact_url(url: str, *, hide_user_only: bool = False) -> str:
    """``url`` with its password, and password-like query values, replaced by ``***``.

    Works on text no parser accepts: a missing or single slash after the
    scheme, or a password holding ``#``, ``/``, ``?`` or ``@``.

    :param hide_user_only: also hide a userinfo without ``:`` (``https://token@host``),
        for systems where that part is a credential rather than a user name.
    """
    scheme = _SCHEME.match(url)
    lead = scheme.group() if scheme else ""
    rest = url[len(lead) :]
    if "@" in rest:
        userinfo, _, after = rest.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        if colon:
            rest = f"{user}:{REDACTED}@{after}"
        elif hide_user_only:
            rest = f"{REDACTED}@{after}"
    return _SECRET_PARAM.sub(rf"\g<1>{REDACTED}", lead + rest)


def redact_urls(text: str) -> str:
    """``text`` with every ``scheme:/…`` URL in it passed through :func:`redact_url`."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)


def remember_secret(value: str) -> None:
    """Hide ``value`` from every text :func:`redact` passes from now on (for the process)."""
    if not value:
        return
    with _lock:
        if value not in _secrets:
            _secrets.append(value)
            _secrets.sort(key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every remembered secret and every URL password replaced by ``***``."""
    with _lock:
        secrets = list(_secrets)
    for secret in secrets:
        # As written, and as repr() escapes it inside a message ('line\\nnext').
        text = text.replace(secret, REDACTED).replace(repr(secret)[1:-1], REDACTED)
    return redact_urls(text)


def redact_values(value: Any) -> Any:
    """``value`` with :func:`redact` applied to every string in it (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_values(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_values(item) for item in value]
    if type(value) is tuple:  # an exc_info triple stays a triple
        return tuple(redact_values(item) for item in value)
    return value


def misplaced_userinfo(url: str) -> bool:
    """Whether an ``@`` past the authority suggests a password with an unescaped ``/?#``.

    An ``@`` inside a query value (``?user=name@tenant``) is fine; one in the
    path, the fragment or a query without ``name=`` is read as the end of a
    userinfo that the parser cut short.
    """
    parts = urlsplit(url)
    if "@" in parts.path or "@" in parts.fragment:
        return True
    if "@" not in parts.query:
        return False
    for piece in re.split(r"[&;]", parts.query):
        name, equals, _value = piece.partition("=")
        if "@" in name or ("@" in piece and not equals):
            return True
    return False
