"""Every error asyncetl raises on purpose.

::

    AsyncetlError
    ├── ConfigError (also ValueError)      a spec or constructor argument is wrong
    ├── ConnectorError                     an external system misbehaved
    │   ├── TransientError                 worth retrying (timeouts, resets, 429/503)
    │   └── PermanentError                 retrying will not help (auth, missing table)
    ├── StageError                         a stage failed; names stage and position
    └── CheckpointError                    a checkpoint could not be read or written

Messages are one sentence naming the offending value and what to do about it;
the CLI prints that sentence instead of a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncetl.core.batch import Position

__all__ = [
    "AsyncetlError",
    "CheckpointError",
    "ConfigError",
    "ConnectorError",
    "PermanentError",
    "StageError",
    "TransientError",
]

#: How a message refusing a committed position tells the operator to start over.
RESET_HINT = "reset the checkpoint (python -m asyncetl checkpoint reset SPEC)"


class AsyncetlError(Exception):
    """Root of every error asyncetl raises on purpose."""


class ConfigError(AsyncetlError, ValueError):
    """A spec, argument or environment variable is invalid.

    :param where: what was being read, e.g. ``pipeline.toml`` or ``JsonlSource``.
    :param key: the offending key, dotted (``sink.table``), when there is one.
    """

    def __init__(self, message: str, *, where: str | None = None, key: str | None = None) -> None:
        self.where = where
        self.key = key
        prefix = ""
        if where and key:
            prefix = f"{where}: {key}: "
        elif where or key:
            prefix = f"{where or key}: "
        super().__init__(prefix + message)


class ConnectorError(AsyncetlError):
    """An external system misbehaved."""


class TransientError(ConnectorError):
    """A failure worth retrying.

    :param retry_after: seconds the server asked us to wait, when it said so.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """A failure that retrying will not fix.

    :param setting: the argument of the part (source, sink, store) that the failure
        is about, when one is: a ``table`` that does not exist, say.
    :ivar part: which part of a pipeline failed to open (``source``, ``sink``,
        ``checkpoints``…), set by the pipeline; with :attr:`setting` it is the key of
        a spec that names the failing value (``sink.table``).
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting
        self.part: str | None = None

    @property
    def key(self) -> str | None:
        """``part.setting`` (``source.table``) when both are known, else ``None``."""
        if self.part is None or self.setting is None:
            return None
        return f"{self.part}.{self.setting}"


def blame(exc: BaseException, part: str) -> None:
    """Say that ``exc``, if a :class:`PermanentError` no part was blamed for yet, is ``part``'s."""
    if isinstance(exc, PermanentError) and exc.part is None:
        exc.part = part


class StageError(AsyncetlError):
    """A stage failed; the run stops without committing past the last acknowledged batch."""

    def __init__(
        self, stage: str, position: Position, cause: BaseException, *, reading: bool = False
    ) -> None:
        self.stage = stage
        self.position = position
        self.cause = cause
        detail = str(cause) or type(cause).__name__
        if not reading:
            where = f"on the batch ending at position {position!r}"
        elif position is None:  # nothing committed or read yet: "after position None" says nothing
            where = "reading from the start"
        else:
            where = f"reading after position {position!r}"
        super().__init__(f"stage {stage!r} failed {where}: {type(cause).__name__}: {detail}")


class CheckpointError(AsyncetlError):
    """A checkpoint could not be read or written."""
