"""The outcome of a ``run``, recorded in the pipeline's checkpoint store for ``status``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from asyncetl import AsyncetlError, MemoryCheckpointStore, Pipeline, RunOutcome
from asyncetl.core.logs import get_logger
from asyncetl.spec import redact

__all__ = ["one_line", "outcome_now", "record_outcome"]

_log = get_logger("asyncetl.cli")


def one_line(error: BaseException) -> str:
    """The error as the CLI prints it: one line, secrets masked."""
    return " ".join(redact(str(error)).split())


async def record_outcome(pipeline: Pipeline, outcome: RunOutcome) -> None:
    """Save ``outcome`` in the pipeline's checkpoint store; a store that fails only warns.

    The run is over, so its own result must stand: a store that cannot take the
    outcome (unreachable, read-only) costs ``status`` that line, nothing more.
    """
    store = pipeline.checkpoints
    if isinstance(store, MemoryCheckpointStore):
        return  # gone with the process: nothing later could read it
    try:
        await store.open()
        try:
            await store.save_outcome(pipeline.name, outcome)
        finally:
            await store.aclose()
    except AsyncetlError as exc:
        _log.warning("run outcome not recorded", error=one_line(exc))


def outcome_now(
    state: Literal["finished", "stopped", "failed"], error: BaseException | None = None
) -> RunOutcome:
    """The outcome of a run that ended just now."""
    return RunOutcome(state, datetime.now(UTC), None if error is None else one_line(error))
