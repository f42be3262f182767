"""The one boundary between aiokafka and asyncetl: settings, retrying, error mapping.

Every broker call goes through :meth:`KafkaClient.call`, which maps aiokafka's
exceptions to :class:`TransientError` (no connection, timeouts, a leader or
coordinator moving: aiokafka's *retriable* errors) or :class:`PermanentError`
(anything the broker refused), and retries ONE call at a time with
:func:`asyncetl.core.retry.retry_call`. Brokers are shown as ``host:port``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import aiokafka.errors as kerr
import anyio
from aiokafka import AIOKafkaConsumer

from asyncetl.connectors.kafka._security import KafkaSecurity
from asyncetl.core.errors import AsyncetlError, ConfigError, PermanentError, TransientError
from asyncetl.core.interfaces import Problem
from asyncetl.core.redact import redact_url
from asyncetl.core.retry import RetryPolicy, retry_call

__all__ = ["KafkaClient", "bootstrap_list"]

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

    async def missing_topics(
        self, consumer: AIOKafkaConsumer, topics: Iterable[str], setting: str
    ) -> list[Problem]:
        """Start ``consumer`` (once, for a check), and which of ``topics`` the cluster lacks.

        :param consumer: one without a group, stopped here: listing topics joins nothing.
        :param setting: the setting that named the topics, for the problems.
        :returns: a problem with ``setting`` per missing topic, or one with
            ``bootstrap_servers`` when no broker answered.
        """
        try:
            with self.errors("connect"):
                await consumer.start()
                existing = await consumer.topics()
        except AsyncetlError as exc:
            return [Problem("bootstrap_servers", str(exc))]
        finally:
            with anyio.move_on_after(5, shield=True):
                await consumer.stop()
        return [
            Problem(setting, f"topic {topic!r} does not exist on Kafka at {self.endpoint}")
            for topic in topics
            if topic not in existing
        ]

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
