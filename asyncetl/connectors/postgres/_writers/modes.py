"""The modes of PostgresSink and the writer of each."""

from __future__ import annotations

from typing import Literal, get_args

from asyncetl.connectors.postgres._writers.append import AppendWriter
from asyncetl.connectors.postgres._writers.base import WriteOptions, Writer
from asyncetl.connectors.postgres._writers.refresh_swap import RefreshSwapWriter
from asyncetl.connectors.postgres._writers.replace_partition import ReplacePartitionWriter
from asyncetl.connectors.postgres._writers.soft_delete import SoftDeleteWriter
from asyncetl.connectors.postgres._writers.upsert import UpsertWriter
from asyncetl.core.errors import ConfigError

__all__ = ["SinkMode", "writer_class"]

SinkMode = Literal["upsert", "append", "replace_partition", "refresh_swap", "soft_delete"]
_MODES: tuple[str, ...] = get_args(SinkMode)
_WRITERS: dict[str, type[Writer]] = {
    writer.mode: writer
    for writer in (
        UpsertWriter,
        AppendWriter,
        ReplacePartitionWriter,
        RefreshSwapWriter,
        SoftDeleteWriter,
    )
}


def writer_class(mode: str, options: WriteOptions, *, where: str) -> type[Writer]:
    """The writer of ``mode``, after checking that it can work with ``options``.

    :param where: names the sink in errors, e.g. ``"sink orders"``.
    :raises ConfigError: for an unknown mode, or settings the mode cannot use.
    """
    writer = _WRITERS.get(mode)
    if writer is None:
        raise ConfigError(
            f"must be one of {', '.join(_MODES)}, not {mode!r}", where=where, key="mode"
        )
    if options.skip_unchanged and mode != "upsert":
        raise ConfigError(
            f'is for mode = "upsert", not {mode!r}', where=where, key="skip_unchanged"
        )
    writer.check_options(options, where)
    return writer
