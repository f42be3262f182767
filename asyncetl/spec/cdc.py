"""The CDC source of a pipeline built from a spec, for ``python -m asyncetl cdc``."""

from __future__ import annotations

from asyncetl import ConfigError, Pipeline
from asyncetl.connectors.postgres.cdc import CdcSource, cdc_drop, cdc_status
from asyncetl.spec._unopened import check_opened, stands_for

__all__ = ["cdc_drop", "cdc_source", "cdc_status", "has_cdc_source"]


def has_cdc_source(pipeline: Pipeline) -> bool:
    """Whether ``pipeline`` reads PostgreSQL CDC (its source may be one left unbuilt)."""
    return isinstance(pipeline.source, CdcSource) or stands_for(pipeline.source, CdcSource)


def cdc_source(pipeline: Pipeline, spec: str) -> CdcSource:
    """``pipeline``'s source, which must be PostgreSQL CDC.

    :raises ConfigError: naming ``spec`` and its ``source`` key otherwise, or the
        variable that a CDC source left out of the spec's build names.
    """
    source = pipeline.source
    check_opened(source, CdcSource)
    if not isinstance(source, CdcSource):
        raise ConfigError(
            f"the source is {type(source).__name__}, not a CDC source", where=spec, key="source"
        )
    return source
