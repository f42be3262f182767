"""How a Kafka connector proves who it is and protects the connection: SASL and TLS, as one object.

:class:`KafkaSecurity` holds the settings that belong together (httpx's
``Timeout`` is the model): the protocol, the SASL mechanism with its user and
password, and the TLS files. The password is remembered as a secret when the
object is made, so it is hidden in every log line and message from then on,
and it is never part of the object's ``repr``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast

from aiokafka.helpers import create_ssl_context

from asyncetl.core.errors import ConfigError
from asyncetl.core.redact import remember_secret

__all__ = ["KafkaSecurity", "Mechanism", "Protocol", "security_of"]

#: How the connection is made: plain or TLS, with or without SASL.
Protocol: TypeAlias = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
PROTOCOLS: tuple[Protocol, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: The SASL mechanisms with a user name and password.
Mechanism: TypeAlias = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
MECHANISMS: tuple[Mechanism, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    """SASL and TLS settings of a Kafka source or sink.

    :param protocol: ``PLAINTEXT`` (the default), ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
    :param mechanism: with SASL: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``.
    :param username: with SASL: the user.
    :param password: with SASL: the password; hidden in every log line and message.
    :param ca_file: with TLS: PEM file of the authorities that signed the brokers'
        certificates (none: the system's).
    :param cert_file: with TLS: PEM file of this client's certificate, for brokers that
        ask for one.
    :param key_file: with TLS: PEM file of that certificate's private key.
    :raises ConfigError: a setting is missing, unknown or does not fit the protocol.
    """

    protocol: Protocol = "PLAINTEXT"
    mechanism: Mechanism | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    where: str = field(default="Kafka", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.password:
            remember_secret(self.password)  # first: no message below may show it
        self._check_choices()
        if self.sasl:
            self._check_sasl()
        else:
            self._refuse_unless("SASL", ("mechanism", "username", "password"))
        if self.tls:
            self._check_files()
        else:
            self._refuse_unless("SSL", ("ca_file", "cert_file", "key_file"))

    @property
    def sasl(self) -> bool:
        """Whether the connection authenticates with SASL; a question only."""
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted with TLS; a question only."""
        return self.protocol.endswith("SSL")

    def client_settings(self) -> dict[str, Any]:
        """aiokafka's keyword arguments for these settings (reads the TLS files).

        Blocking (it reads files): call it in a worker thread.

        :raises ConfigError: a TLS file cannot be read or is no PEM of its kind.
        """
        settings: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            settings |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        if self.tls:
            settings["ssl_context"] = self._ssl_context()
        return settings

    def _ssl_context(self) -> ssl.SSLContext:
        try:
            context: ssl.SSLContext = create_ssl_context(
                cafile=self.ca_file, certfile=self.cert_file, keyfile=self.key_file
            )
        except (OSError, ssl.SSLError) as exc:
            named = ", ".join(
                f"{name} {value!r}"
                for name, value in (
                    ("ca_file", self.ca_file),
                    ("cert_file", self.cert_file),
                    ("key_file", self.key_file),
                )
                if value
            )
            raise ConfigError(
                f"cannot use the TLS files ({named}): {exc}; give readable PEM files",
                where=self.where,
                key="security",
            ) from exc
        return context

    def _check_choices(self) -> None:
        if self.protocol not in PROTOCOLS:
            self._fail("protocol", f"expected one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.mechanism is not None and self.mechanism not in MECHANISMS:
            self._fail(
                "mechanism", f"expected one of {', '.join(MECHANISMS)}, got {self.mechanism!r}"
            )

    def _check_sasl(self) -> None:
        if self.mechanism is None:
            self._fail("mechanism", f"{self.protocol} needs a SASL mechanism, e.g. SCRAM-SHA-512")
        for name in ("username", "password"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                self._fail(name, f"{self.mechanism} needs a non-empty {name}")

    def _check_files(self) -> None:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and Path(value).is_file()):
                self._fail(name, f"no such file: {value!r}")
        if (self.cert_file is None) != (self.key_file is None):
            self._fail("key_file", "give cert_file and key_file together, or neither")

    def _refuse_unless(self, kind: str, names: tuple[str, ...]) -> None:
        for name in names:
            if getattr(self, name) is not None:
                self._fail(name, f"is for {kind} connections; set protocol to one with {kind}")

    def _fail(self, name: str, message: str) -> None:
        raise ConfigError(message, where=self.where, key=f"security.{name}")


_NAMES = frozenset(f.name for f in fields(KafkaSecurity)) - {"where"}


def security_of(value: KafkaSecurity | Mapping[str, object] | None, where: str) -> KafkaSecurity:
    """``value`` as settings: as given, from a spec's table, or plain connections for none.

    :raises ConfigError: a key is unknown, or a setting is wrong.
    """
    if value is None:
        return KafkaSecurity(where=where)
    if isinstance(value, KafkaSecurity):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"expected a table of security settings, not {type(value).__name__}",
            where=where,
            key="security",
        )
    password = value.get("password")
    if isinstance(password, str):
        remember_secret(password)  # before any message below could quote it
    unknown = sorted(set(value) - _NAMES)
    if unknown:
        raise ConfigError(
            f"unknown setting {unknown[0]!r}; expected some of {', '.join(sorted(_NAMES))}",
            where=where,
            key="security",
        )
    settings = cast(dict[str, Any], dict(value))
    for name, item in settings.items():
        if item is not None and not isinstance(item, str):
            raise ConfigError(
                f"must be text, not {type(item).__name__}", where=where, key=f"security.{name}"
            )
    return KafkaSecurity(**settings, where=where)
