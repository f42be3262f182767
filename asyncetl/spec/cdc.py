"""The CDC source of a pipeline built from a spec, for ``python -m asyncetl cdc``."""

from __future__ import annotations

from asyncetl import ConfigError, Pipeline
from asyncetl.connectors.postgres.cdc import CdcSource, cdc_drop, cdc_status

__all__ = ["cdc_drop", "cdc_source", "cdc_status"]


def cdc_source(pipeline: Pipeline, spec: str) -> CdcSource:
    """``pipeline``'s source, which must be PostgreSQL CDC.

    :raises ConfigError: naming ``spec`` and its ``source`` key otherwise.
    """
    source = pipeline.source
    if not isinstance(source, CdcSource):
        raise ConfigError(
            f"the source is {type(source).__name__}, not a CDC source", where=spec, key="source"
        )
    return source
