"""Building pipelines from spec text in tests."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from asyncetl.spec import build_pipeline

SourceT = TypeVar("SourceT")
SinkT = TypeVar("SinkT")


def built_source_and_sink(
    spec: Path, text: str, source_type: type[SourceT], sink_type: type[SinkT]
) -> tuple[SourceT, SinkT]:
    """Write ``text`` to ``spec`` and build it; its source and sink, asserted to be of these types."""
    spec.write_text(text)
    built = build_pipeline(spec)
    assert isinstance(built.source, source_type)
    assert isinstance(built.sink, sink_type)
    return built.source, built.sink
