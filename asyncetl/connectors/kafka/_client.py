"""The one boundary between aiokafka and asyncetl: settings, retrying, error mapping.

Every broker call goes through :meth:`KafkaClient.call`, which maps aiokafka's
exceptions to :class:`TransientError` (no connection, timeouts, a leader or
coordinator moving: aiokafka's *retriable* errors) or :class:`PermanentError`
(anything the broker refused), and retries ONE call at a time with
:func:`asyncetl.core.retry.retry_call`. Brokers are shown as ``host:port``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import aiokafka.errors as kerr
import anyio

from asyncetl.connectors.kafka._security import KafkaSecurity
from asyncetl.core.errors import ConfigError, PermanentError, TransientError
from asyncetl.core.redact import redact_url
from asyncetl.core.retry import RetryPolicy, retry_call

__all__ = [
    "KafkaClient",
    "bootstrap_list",
    "nonempty",
    "positive_int",
    "positive_seconds",
    "retry_policy",
]

T = TypeVar("T")

# aiokafka logs through the standard library without a handler of its own, so where the
# application configured none, Python's last-resort handler would print its lines (a
# refused connection, before this connector's one-sentence error) to stderr. Its records
# still reach any handler the application sets up.
logging.getLogger("aiokafka").addHandler(logging.NullHandler())

#: Milliseconds aiokafka waits for one request, and for one bootstrap connection.
REQUEST_TIMEOUT_MS = 10_000


def bootstrap_list(servers: object, where: str) -> list[str]:
    """``servers`` as a list of ``host:port``; a string may hold several, comma-separated.

    :raises ConfigError: when none is given, or one is not ``host:port``.
    """
    if isinstance(servers, str):
        servers = servers.split(",")
    if not isinstance(servers, list | tuple) or not all(isinstance(s, str) for s in servers):
        raise ConfigError(
            f"expected 'host:port' or a list of them, got {servers!r}",
            where=where,
            key="bootstrap_servers",
        )
    found = [server.strip() for server in servers if server.strip()]
    if not found:
        raise ConfigError(
            "no broker given; e.g. 127.0.0.1:9092", where=where, key="bootstrap_servers"
        )
    for server in found:
        host, _, port = server.rpartition(":")
        if not host or "/" in server or "@" in server or not port.isdigit():
            # A mistaken 'user:password@host:port' must not echo the password.
            raise ConfigError(
                f"expected a broker as 'host:port', not {redact_url(server)!r}",
                where=where,
                key="bootstrap_servers",
            )
    return found


def nonempty(value: object, where: str, key: str) -> str:
    """``value`` if it is a non-empty string.

    :raises ConfigError: otherwise, naming ``key``.
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(f"must be a non-empty string, not {value!r}", where=where, key=key)
    return value


def positive_int(value: object, where: str, key: str) -> int:
    """``value`` if it is a positive integer.

    :raises ConfigError: otherwise, naming ``key``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"must be a positive integer, not {value!r}", where=where, key=key)
    return value


def positive_seconds(value: object, where: str, key: str) -> float:
    """``value`` if it is a positive, finite number.

    :raises ConfigError: otherwise, naming ``key``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0  # also refuses NaN
        or math.isinf(value)
    ):
        raise ConfigError(
            f"must be a positive number of seconds, not {value!r}", where=where, key=key
        )
    return float(value)


def retry_policy(retries: object, retry_max_time: object, where: str) -> RetryPolicy:
    """The policy for ``retries`` (after the first try) and ``retry_max_time``.

    :raises ConfigError: on a negative count or a non-positive time.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(
            f"must be a non-negative integer, not {retries!r}", where=where, key="retries"
        )
    max_time = positive_seconds(retry_max_time, where, "retry_max_time")
    return RetryPolicy(max_tries=retries + 1, max_time=max_time, max_delay=5.0)


class KafkaClient:
    """Retries and error mapping for one connector's broker calls.

    :param servers: the bootstrap brokers, ``host:port``.
    :param where: names the connector in messages, e.g. ``KafkaSource 'kafka'``.
    :param security: how connections authenticate and encrypt.
    """

    def __init__(
        self,
        servers: list[str],
        *,
        where: str,
        policy: RetryPolicy,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.servers = servers
        self.where = where
        self.endpoint = ", ".join(servers)
        self.policy = policy
        self.security = security or KafkaSecurity(where=where)
        self._settings: dict[str, Any] | None = None

    async def connection_settings(self) -> dict[str, Any]:
        """aiokafka's security keywords, read once (TLS files in a worker thread).

        :raises ConfigError: a TLS file cannot be used.
        """
        if self._settings is None:
            self._settings = await anyio.to_thread.run_sync(self.security.client_settings)
        return self._settings

    async def call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call()``, retrying transient failures.

        :param what: the request, for messages, e.g. ``commit to group 'etl'``.
        :raises TransientError: when every retry failed transiently.
        :raises PermanentError: when the broker refused the request.
        """

        async def once() -> T:
            with self.errors(what):
                return await call()

        return await retry_call(once, policy=self.policy, what=f"{what} on {self.endpoint}")

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Map aiokafka's exceptions raised inside to asyncetl's (the one boundary).

        :raises TransientError: no connection, a timeout, a retriable broker error.
        :raises PermanentError: the broker refused ``what``.
        """
        try:
            yield
        except KeyError as exc:
            # aiokafka's SCRAM client reads the server's final message without checking
            # for the error the server sent instead of its signature ('v').
            if not self.security.sasl or exc.args != ("v",):
                raise
            raise PermanentError(
                f"Kafka at {self.endpoint} refused the {self.security.mechanism} credentials "
                f"of user {self.security.username!r} for {self.where}; check "
                "security.username and security.password"
            ) from exc
        except (kerr.KafkaConnectionError, OSError) as exc:  # TimeoutError is an OSError
            # aiokafka reports a refused SASL handshake or TLS session as no connection.
            settings = " and the security settings" if self.security.protocol != "PLAINTEXT" else ""
            raise TransientError(
                f"Kafka at {self.endpoint} is unreachable or did not answer {what} in time "
                f"({_describe(exc)}); check that the broker is running and that "
                f"bootstrap_servers{settings} {'are' if settings else 'is'} right"
            ) from exc
        except kerr.KafkaError as exc:
            if exc.retriable:
                raise TransientError(
                    f"Kafka at {self.endpoint} could not answer {what} for now ({_describe(exc)})"
                ) from exc
            raise PermanentError(
                f"Kafka at {self.endpoint} refused {what} for {self.where} ({_describe(exc)})"
            ) from exc


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    # aiokafka's messages repeat the class name, and its bootstrap failure lists sockets.
    detail = str(exc).removeprefix(f"{name}: ")
    if detail.startswith("Unable to bootstrap"):
        detail = "no broker accepted a connection"
    return f"{name}: {detail}" if detail else name
