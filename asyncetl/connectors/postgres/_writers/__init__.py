"""The writers of :class:`~asyncetl.connectors.postgres.PostgresSink`, one per mode.

Each mode is one module, readable on its own: :mod:`.upsert`, :mod:`.append`,
:mod:`.replace_partition`, :mod:`.refresh_swap` and :mod:`.soft_delete`, over
what they share in :mod:`.base` (settings, the table's checks) and
:mod:`.keyed` (the key). Row-hash change detection (:mod:`.row_hash`) is a
concern the writers use, not a mode. The sink picks its writer once, with
:func:`writer_class`, and keeps the connections, retries and transactions.
"""

from __future__ import annotations

from typing import Literal, get_args

from asyncetl.connectors.postgres._writers.append import AppendWriter
from asyncetl.connectors.postgres._writers.base import Transact, WriteOptions, Writer
from asyncetl.connectors.postgres._writers.refresh_swap import RefreshSwapWriter
from asyncetl.connectors.postgres._writers.replace_partition import ReplacePartitionWriter
from asyncetl.connectors.postgres._writers.row_hash import RowHash
from asyncetl.connectors.postgres._writers.soft_delete import SoftDeleteWriter
from asyncetl.connectors.postgres._writers.upsert import UpsertWriter
from asyncetl.core.errors import ConfigError

__all__ = [
    "RefreshSwapWriter",
    "RowHash",
    "SinkMode",
    "Transact",
    "WriteOptions",
    "Writer",
    "writer_class",
]

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
    writer.check_options(options, where)
    return writer
