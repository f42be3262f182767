"""Kafka: a consumer-group source and a sink, on aiokafka (``pip install asyncetl[kafka]``)."""

from asyncetl.connectors.kafka._records import Format as Format
from asyncetl.connectors.kafka._records import KafkaMessage as KafkaMessage
from asyncetl.connectors.kafka._security import KafkaSecurity as KafkaSecurity
from asyncetl.connectors.kafka.sink import Compression as Compression
from asyncetl.connectors.kafka.sink import KafkaSink as KafkaSink
from asyncetl.connectors.kafka.source import KafkaSource as KafkaSource
from asyncetl.connectors.kafka.source import Start as Start

__all__ = [
    "Compression",
    "Format",
    "KafkaMessage",
    "KafkaSecurity",
    "KafkaSink",
    "KafkaSource",
    "Start",
]
