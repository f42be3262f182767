"""How the HTTP connectors talk to a server: one settings object, in small groups.

:class:`ClientSettings` gathers what :class:`~asyncetl.connectors.http.HttpSource`
and :class:`~asyncetl.connectors.http.HttpSink` share — headers, :class:`Auth`,
:class:`Timeouts`, :class:`~asyncetl.core.retry.RetryPolicy` and :class:`Limits` —
as httpx's ``Timeout`` and ``Limits`` do. Both connectors take it as ``client=``,
an instance or a mapping (a spec's ``[source.client]`` table)::

    [source.client]
    timeout = 30                        # or a table: {total = 30, connect = 10, read = 5}
    auth = "bearer"                     # or a table: {kind = "bearer", token_env = "TOKEN"}
    headers = {Accept = "application/json"}
    retry = {max_tries = 5, max_time = 60, base_delay = 0.1, max_delay = 30}
    limits = {requests_per_second = 20, connections_per_host = 16}

:func:`client_settings` also folds in the flat keywords the connectors took
before (``timeout``, ``max_tries``, ``rate_limit``, ``auth``, ...), in this one
place, so that older spec files keep working.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Final

from asyncetl.core.errors import ConfigError
from asyncetl.core.retry import RetryPolicy

__all__ = [
    "AUTH_KINDS",
    "FLAT_KEYS",
    "Auth",
    "ClientSettings",
    "Limits",
    "Timeouts",
    "client_settings",
    "is_secret_name",
]

AUTH_KINDS = ("bearer", "basic", "header", "query")
_SECRET_NAME = re.compile(
    r"token|key|secret|passw|pwd|signature|^sig$|auth|credential|session|cookie", re.IGNORECASE
)


def is_secret_name(name: str) -> bool:
    """Whether a header or query parameter called ``name`` looks like it carries a secret."""
    return _SECRET_NAME.search(name) is not None


def _positive(value: object, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"must be a positive number, not {value!r}", key=key)


def _positive_int(value: object, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"must be a positive integer, not {value!r}", key=key)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long one request may take.

    :param total: seconds for the whole request, body included.
    :param connect: seconds to get a connection.
    :param read: seconds to wait for each read from the socket; ``None`` for no
        limit of its own, ``total`` bounding the reads with the rest (a read timer
        is re-armed on every read, which costs a request more than it guards).
    """

    total: float = 30.0
    connect: float = 10.0
    read: float | None = None

    def __post_init__(self) -> None:
        _positive(self.total, "timeout.total")
        _positive(self.connect, "timeout.connect")
        if self.read is not None:
            _positive(self.read, "timeout.read")


@dataclass(frozen=True, slots=True)
class Limits:
    """How hard to press one host.

    :param requests_per_second: requests per second per host; ``None`` for no limit.
    :param connections_per_host: connections open to one host at most.
    """

    requests_per_second: float | None = None
    connections_per_host: int = 16

    def __post_init__(self) -> None:
        if self.requests_per_second is not None:
            _positive(self.requests_per_second, "limits.requests_per_second")
        _positive_int(self.connections_per_host, "limits.connections_per_host")


@dataclass(frozen=True, slots=True)
class Auth:
    """Which credentials to send; they come from the environment, never the spec.

    A URL's ``user:password@`` is moved here (:meth:`with_userinfo`) when a
    connector is made, so that it goes with every request and into no position.

    :param kind: ``bearer``, ``basic``, ``header`` (API key header), ``query``
        (API key query parameter) or ``None``.
    :param token_env: variable holding the bearer token.
    :param username_env: variable holding the basic user name.
    :param password_env: variable holding the basic password.
    :param api_key_env: variable holding the API key.
    :param api_key_name: header or query parameter name of the API key
        (default ``X-API-Key`` for headers, ``api_key`` for queries).
    """

    kind: str | None = None
    token_env: str = "API_TOKEN"  # noqa: S105  (a variable name, not a secret)
    username_env: str = "API_USERNAME"
    password_env: str = "API_PASSWORD"  # noqa: S105  (a variable name, not a secret)
    api_key_env: str = "API_KEY"
    api_key_name: str = ""
    #: basic credentials taken from the URL, used instead of the variables
    userinfo: tuple[str, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in (None, "", *AUTH_KINDS):
            raise ConfigError(
                f"must be one of {', '.join(AUTH_KINDS)} or left out, not {self.kind!r}",
                key="auth",
            )

    def with_userinfo(self, user: str, password: str) -> Auth:
        """These settings with basic credentials from a URL.

        :raises ConfigError: when another kind of credential is configured too
            (the message names the user, never the password).
        """
        if self.kind:
            raise ConfigError(
                f"the url carries credentials for user {user!r} and auth is {self.kind!r} "
                "too; keep one of them",
                key="url",
            )
        return dataclasses.replace(self, kind="basic", userinfo=(user, password))

    @property
    def key_name(self) -> str:
        """The API key's header or query parameter name."""
        return self.api_key_name or ("api_key" if self.kind == "query" else "X-API-Key")

    @property
    def secret_param(self) -> str | None:
        """The query parameter carrying the API key, if any."""
        return self.key_name if self.kind == "query" else None


@dataclass(frozen=True, slots=True, repr=False)  # its repr hides secret header values
class ClientSettings:
    """Everything about how to talk to a server, shared by the source and the sink.

    :param headers: sent with every request; the values of those whose name looks
        secret (``Authorization``, ``X-Api-Key``, ...) or is in ``secret_headers``
        are never shown, and are scrubbed from error messages.
    :param secret_headers: more header names whose values are secrets.
    :param auth: credentials from the environment.
    :param timeout: per-request time limits.
    :param retry: how one request is retried.
    :param limits: pacing and connections per host.
    :raises ConfigError: on an invalid setting.
    """

    headers: Mapping[str, str] = field(default_factory=dict)
    secret_headers: tuple[str, ...] = ()
    auth: Auth = field(default_factory=Auth)
    timeout: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: Limits = field(default_factory=Limits)

    def __repr__(self) -> str:
        headers = {
            name: "***" if self.is_secret_header(name) else value
            for name, value in self.headers.items()
        }
        return (
            f"ClientSettings(headers={headers!r}, secret_headers={self.secret_headers!r}, "
            f"auth={self.auth!r}, timeout={self.timeout!r}, retry={self.retry!r}, "
            f"limits={self.limits!r})"
        )

    def is_secret_header(self, name: str) -> bool:
        """Whether the header ``name``'s value is a secret."""
        marked = {header.lower() for header in self.secret_headers}
        return name.lower() in marked or is_secret_name(name)

    @classmethod
    def from_mapping(cls, table: Mapping[str, object]) -> ClientSettings:
        """Settings from a spec's ``client`` table; a number or text may stand for a group.

        ``timeout = 30`` is the total; ``auth = "bearer"`` is the kind.

        :raises ConfigError: naming the key (``client.timeout.read``) that is wrong.
        """
        _known(table, _GROUPS.keys() | {"headers", "secret_headers"}, "client")
        options: dict[str, object] = {}
        if "headers" in table:
            options["headers"] = _headers(table["headers"])
        if "secret_headers" in table:
            options["secret_headers"] = _names(table["secret_headers"])
        for name, group in _GROUPS.items():
            if name in table:
                options[name] = _group(name, group, table[name])
        made = _made(cls, options, "client")
        assert isinstance(made, cls)
        return made


# -- reading a client table ----------------------------------------------------------

#: group name -> (its class, the field a bare value sets, the fields' kinds)
_Group = tuple[type, str | None, dict[str, str]]
_GROUPS: Final[dict[str, _Group]] = {
    "auth": (
        Auth,
        "kind",
        {
            "kind": "text",
            "token_env": "text",
            "username_env": "text",
            "password_env": "text",
            "api_key_env": "text",
            "api_key_name": "text",
        },
    ),
    "timeout": (Timeouts, "total", {"total": "number", "connect": "number", "read": "number"}),
    "retry": (
        RetryPolicy,
        None,
        {
            "max_tries": "integer",
            "max_time": "number",
            "base_delay": "number",
            "max_delay": "number",
        },
    ),
    "limits": (
        Limits,
        None,
        {"requests_per_second": "number", "connections_per_host": "integer"},
    ),
}


def _group(name: str, group: _Group, value: object) -> object:
    cls, bare, kinds = group
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        if bare is None:
            raise ConfigError(f"must be a table, not {value!r}", key=f"client.{name}")
        value = {bare: value}
    _known(value, kinds.keys(), f"client.{name}")
    options = {key: _read(item, kinds[key], f"client.{name}.{key}") for key, item in value.items()}
    return _made(cls, options, f"client.{name}")


def _made(cls: type, options: dict[str, object], prefix: str) -> object:
    try:
        return cls(**options)
    except ConfigError as exc:  # re-addressed below the client table
        message = str(exc).removeprefix(f"{exc.key}: ") if exc.key else str(exc)
        raise ConfigError(message, key=f"client.{exc.key}" if exc.key else prefix) from None


def _known(table: Mapping[str, object], names: Collection[str], where: str) -> None:
    for key in table:
        if key not in names:
            accepted = ", ".join(sorted(names))
            raise ConfigError(f"unknown key; {where} accepts {accepted}", key=f"{where}.{key}")


def _read(value: object, kind: str, key: str) -> object:
    """``value`` as a setting of ``kind``; text from ``${VAR}`` may stand for a number."""
    if kind == "text":
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"must be text, not {value!r}", key=key)
        return value
    if isinstance(value, str):
        try:
            return int(value) if kind == "integer" else float(value)
        except ValueError:
            pass
    wanted = int if kind == "integer" else int | float
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise ConfigError(
            f"must be {'an integer' if kind == 'integer' else 'a number'}, not {value!r}", key=key
        )
    return value


def _headers(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError("must be a table of text values", key="client.headers")
    return dict(value)


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of header names", key="client.secret_headers")
    return tuple(value)


# -- the flat keywords of older specs ------------------------------------------------

#: flat keyword -> (group, field) of the client table; ``headers`` has no group
FLAT_KEYS: Final[dict[str, tuple[str, str | None]]] = {
    "headers": ("headers", None),
    "auth": ("auth", "kind"),
    "token_env": ("auth", "token_env"),
    "username_env": ("auth", "username_env"),
    "password_env": ("auth", "password_env"),
    "api_key_env": ("auth", "api_key_env"),
    "api_key_name": ("auth", "api_key_name"),
    "timeout": ("timeout", "total"),
    "connect_timeout": ("timeout", "connect"),
    "read_timeout": ("timeout", "read"),
    "max_tries": ("retry", "max_tries"),
    "max_time": ("retry", "max_time"),
    "base_delay": ("retry", "base_delay"),
    "max_delay": ("retry", "max_delay"),
    "rate_limit": ("limits", "requests_per_second"),
    "limit_per_host": ("limits", "connections_per_host"),
}


def client_settings(
    client: ClientSettings | Mapping[str, object] | None,
    flat: Mapping[str, object],
    *,
    where: str,
    owner: str,
    accepted: Collection[str],
) -> ClientSettings:
    """The settings of ``client`` with the flat keywords of older specs folded in.

    :param where: names the connector in messages, e.g. ``HttpSource 'orders'``.
    :param owner: the connector's class, e.g. ``HttpSource``.
    :param accepted: the connector's own keywords, listed when a key is unknown.
    :raises ConfigError: on an unknown key, a key given both flat and in
        ``client``, or an invalid value.
    """
    try:
        return _client_settings(client, flat, owner, accepted)
    except ConfigError as exc:
        message = str(exc).removeprefix(f"{exc.key}: ") if exc.key else str(exc)
        raise ConfigError(message, where=where, key=exc.key) from None


def _client_settings(
    client: ClientSettings | Mapping[str, object] | None,
    flat: Mapping[str, object],
    owner: str,
    accepted: Collection[str],
) -> ClientSettings:
    for key in flat:
        if key not in FLAT_KEYS:
            names = ", ".join(sorted({*accepted, *FLAT_KEYS}))
            raise ConfigError(f"unknown key; {owner} accepts {names}", key=key)
    if isinstance(client, ClientSettings):
        if flat:
            key = next(iter(flat))
            raise ConfigError(
                f"client is a ClientSettings, so set {_grouped(key)} there, not {key} beside it",
                key=key,
            )
        return client
    table = _merged(dict(client or {}), flat)
    try:
        return ClientSettings.from_mapping(table)
    except ConfigError as exc:
        raise _as_flat(exc, flat) from None


def _grouped(flat_key: str) -> str:
    group, name = FLAT_KEYS[flat_key]
    return f"client.{group}" + (f".{name}" if name else "")


def _merged(table: dict[str, object], flat: Mapping[str, object]) -> dict[str, object]:
    """``table`` with each flat keyword set at its place; a place set twice is an error."""
    for key, value in flat.items():
        group, name = FLAT_KEYS[key]
        fields: dict[str, object] | None
        if name is None:
            fields = None if group in table else {}
        else:
            fields = _fields(group, table.get(group))
        if fields is None or (name is not None and name in fields):
            raise ConfigError(f"is set both here and as {_grouped(key)}; keep one of them", key=key)
        table[group] = value if name is None else {**fields, name: value}
    return table


def _fields(group: str, value: object) -> dict[str, object] | None:
    """The fields a client table's ``group`` sets; ``None`` when it is a settings object."""
    cls, bare, _ = _GROUPS[group]
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, cls) or bare is None:
        return None
    return {bare: value}


def _as_flat(exc: ConfigError, flat: Mapping[str, object]) -> ConfigError:
    """``exc`` naming the flat keyword when that is what the spec used."""
    for key in flat:
        if exc.key == _grouped(key) or (exc.key == "client.retry" and FLAT_KEYS[key][0] == "retry"):
            message = str(exc).removeprefix(f"{exc.key}: ")
            return ConfigError(message, key=key)
    return exc
