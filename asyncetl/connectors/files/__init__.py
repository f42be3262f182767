"""Files: JSON Lines and CSV sources followed by byte offset, a JSON Lines sink, and a
JSON Lines dead-letter store.

Everything here needs nothing but the local file system.
"""

from asyncetl.connectors.files._csv import CsvSource as CsvSource
from asyncetl.connectors.files._deadletter import JsonlDeadLetterStore as JsonlDeadLetterStore
from asyncetl.connectors.files._jsonl import JsonlSink as JsonlSink
from asyncetl.connectors.files._jsonl import JsonlSource as JsonlSource

__all__ = ["CsvSource", "JsonlDeadLetterStore", "JsonlSink", "JsonlSource"]
