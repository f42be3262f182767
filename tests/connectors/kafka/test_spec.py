"""The ``kafka`` source and sink types of spec files, and their checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from asyncetl import ConfigError, Problem
from asyncetl.connectors.kafka import KafkaSink, KafkaSource
from asyncetl.spec import build_pipeline
from tests.connectors.kafka.helpers import Topic
from tests.spec.helpers import built_source_and_sink

SPEC = """
[pipeline]
name = "kafka_copy"

[source]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092,127.0.0.1:9093"
topics = ["orders", "refunds"]
group = "etl"
format = "debezium"
start = "earliest"

[sink]
type = "kafka"
bootstrap_servers = ["127.0.0.1:9092"]
topic = "copied.{kind}"
key_fields = ["id"]
compression = "gzip"
database = "shop"
with_schema = true
"""


def test_a_spec_builds_the_kafka_source_and_sink(tmp_path: Path) -> None:
    source, sink = built_source_and_sink(tmp_path / "kafka.toml", SPEC, KafkaSource, KafkaSink)
    assert source.client.servers == ["127.0.0.1:9092", "127.0.0.1:9093"]
    assert (source.topics, source.group, source.format, source.start) == (
        ["orders", "refunds"],
        "etl",
        "debezium",
        "earliest",
    )
    assert (sink.topic.text, sink.key_fields, sink.compression) == (
        "copied.{kind}",
        ("id",),
        "gzip",
    )
    assert (sink.database, sink.with_schema) == ("shop", True)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('format = "debezium"', 'format = "avro"', r"kafka\.toml: source\.format: expected one of"),
        ('group = "etl"', 'group = ""', r"kafka\.toml: source\.group: must be a non-empty string"),
        (
            'bootstrap_servers = ["127.0.0.1:9092"]',
            'bootstrap_servers = ["kafka://u:p@host"]',
            r"kafka\.toml: sink\.bootstrap_servers: expected a broker as 'host:port'",
        ),
        (
            'topic = "copied.{kind}"',
            'topic = "copied.{0}"',
            r"kafka\.toml: sink\.topic: topic template 'copied\.\{0\}' may name fields only",
        ),
        ('compression = "gzip"', 'compression = "brotli"', r"kafka\.toml: sink\.compression: "),
        (
            "with_schema = true",
            'with_schema = "yes"',
            r"kafka\.toml: sink\.with_schema: expected true or false, got 'yes'$",
        ),
    ],
)
def test_a_wrong_setting_names_the_file_and_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    spec = tmp_path / "kafka.toml"
    spec.write_text(SPEC.replace(old, new))
    with pytest.raises(ConfigError, match=message):
        build_pipeline(spec)


@pytest.mark.anyio
async def test_checks_name_missing_topics_and_create_nothing(topic: Topic) -> None:
    ready = KafkaSource(topic.bootstrap, [topic.name], group=topic.group)
    assert await ready.check() == []
    assert await KafkaSink(topic.bootstrap, topic.name).check() == []
    assert await KafkaSink(topic.bootstrap, "{kind}").check() == []  # routed per record

    missing = f"{topic.name}_missing"
    at = f"on Kafka at {topic.bootstrap}"
    source = KafkaSource(topic.bootstrap, [topic.name, missing], group=topic.group)
    assert await source.check() == [Problem("topics", f"topic {missing!r} does not exist {at}")]
    assert await KafkaSink(topic.bootstrap, missing).check() == [
        Problem("topic", f"topic {missing!r} does not exist {at}")
    ]
    assert await topic.committed() == {0: None, 1: None, 2: None}


@pytest.mark.anyio
async def test_an_unreachable_broker_is_tried_once_and_named_by_host_and_port() -> None:
    with capture_logs():
        problems = await KafkaSource("127.0.0.1:9", ["orders"], group="etl").check()
        problems += await KafkaSink("127.0.0.1:9", "orders").check()
    assert [problem.setting for problem in problems] == ["bootstrap_servers"] * 2
    assert all(
        problem.message.startswith("Kafka at 127.0.0.1:9 is unreachable or did not answer connect")
        for problem in problems
    )
