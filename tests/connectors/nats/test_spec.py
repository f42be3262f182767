"""The ``nats`` source and sink types of spec files."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncetl import ConfigError
from asyncetl.connectors.nats import JetStreamSink, JetStreamSource
from asyncetl.spec import build_pipeline
from tests.spec.helpers import built_source_and_sink

SPEC = """
[pipeline]
name = "nats_copy"

[source]
type = "nats"
servers = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
stream = "ORDERS"
durable = "etl"
subject = "orders.created"
batch = 200
ack_wait = 30

[sink]
type = "nats"
servers = "nats://127.0.0.1:4222"
subject = "orders.copied"
id_field = "id"
"""


def test_a_spec_builds_the_jetstream_source_and_sink(tmp_path: Path) -> None:
    source, sink = built_source_and_sink(
        tmp_path / "nats.toml", SPEC, JetStreamSource, JetStreamSink
    )
    assert source.client.servers == ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
    assert (source.stream, source.durable, source.subject) == ("ORDERS", "etl", "orders.created")
    assert (source.batch, source.ack_wait) == (200, 30.0)
    assert (sink.subject, sink.id_field, sink.dedupe) == ("orders.copied", "id", True)


def test_a_wrongly_typed_setting_names_the_file_and_key(tmp_path: Path) -> None:
    spec = tmp_path / "nats.toml"
    spec.write_text(SPEC.replace("batch = 200", 'batch = "many"'))
    with pytest.raises(ConfigError, match=r"nats\.toml: source\.batch: expected an integer"):
        build_pipeline(spec)
