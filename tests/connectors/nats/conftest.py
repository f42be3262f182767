"""Fixtures for the NATS JetStream tests: a connection and a throwaway stream."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.api import StreamConfig

from tests.connectors.nats.helpers import NATS_URL, Stream


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    """A stream with a random name; deleted (with its consumers) afterwards."""
    token = secrets.token_hex(6)
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        created = Stream(f"ASYNCETL_TEST_{token}", f"asyncetl_test_{token}", js)
        await js.add_stream(StreamConfig(name=created.name, subjects=[f"{created.prefix}.>"]))
        try:
            yield created
        finally:
            await js.delete_stream(created.name)
    finally:
        await nc.close()
