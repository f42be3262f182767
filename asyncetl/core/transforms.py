"""Record- and batch-level transforms, sync or async.

A record-level function returns one record, ``None`` to drop it, or (with
``kind="flat_map"``) an iterable of records. A batch-level function takes the
list of records and returns a list. Async functions are awaited; a sync batch
function may run in a worker thread with ``thread=True``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias, cast

import anyio.to_thread

from asyncetl.core.errors import ConfigError
from asyncetl.core.interfaces import FailurePolicy, Reject, Resource

__all__ = ["Transform", "TransformKind", "TransformResult"]

TransformKind: TypeAlias = Literal["map", "flat_map", "batch"]
_KINDS = ("map", "flat_map", "batch")
_POLICIES = ("fail", "dead_letter")


@dataclass(frozen=True, slots=True)
class TransformResult:
    records: list[object]
    rejects: list[Reject]


class Transform(Resource):
    """One transform stage.

    :param fn: the user function (``module:function`` in specs).
    :param kind: ``map`` (record → record or ``None``), ``flat_map`` (record →
        iterable of records) or ``batch`` (list → list).
    :param workers: how many batches this stage works on at once.
    :param ordered: keep source order downstream (the default; required for
        ordered-per-key delivery).
    :param on_error: ``fail`` stops the run; ``dead_letter`` sets the record aside.
    :param thread: run a sync function in a worker thread (for CPU-heavy batch work).
    """

    def __init__(
        self,
        fn: Callable[..., object],
        *,
        kind: TransformKind = "map",
        name: str | None = None,
        workers: int = 1,
        ordered: bool = True,
        on_error: FailurePolicy = "fail",
        thread: bool = False,
    ) -> None:
        where = f"transform {name or _fn_name(fn)}"
        if kind not in _KINDS:
            raise ConfigError(f"kind must be one of {', '.join(_KINDS)}, not {kind!r}", where=where)
        if on_error not in _POLICIES:
            raise ConfigError(
                f"on_error must be 'fail' or 'dead_letter', not {on_error!r}", where=where
            )
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, not {workers!r}", where=where)
        if not callable(fn):
            raise ConfigError(f"{fn!r} is not callable", where=where)
        self.fn = fn
        self.kind = kind
        self.name = name or _fn_name(fn)
        self.workers = workers
        self.ordered = ordered
        self.on_error = on_error
        self.thread = thread
        self.is_async = inspect.iscoroutinefunction(fn)

    async def apply(self, records: Sequence[object]) -> TransformResult:
        """Run the function over ``records``; exceptions from records become rejects.

        Under ``fail`` the first exception propagates instead.
        """
        if self.kind == "batch":
            return await self._apply_batch(records)
        if self.is_async:
            return await self._apply_records_async(records)
        if self.thread:
            return await anyio.to_thread.run_sync(self._apply_records_sync, records)
        return self._apply_records_sync(records)

    def _apply_records_sync(self, records: Sequence[object]) -> TransformResult:
        fn, flat, fail = self.fn, self.kind == "flat_map", self.on_error == "fail"
        out: list[object] = []
        rejects: list[Reject] = []
        append = out.append
        for record in records:
            try:
                result = fn(record)
                # The common map case stays a bare append: this loop is the hot path.
                if flat:
                    out.extend(_outputs(result, flat))
                elif result is not None:
                    append(result)
            except Exception as exc:
                if fail:
                    raise
                rejects.append(Reject(record, exc))
        return TransformResult(out, rejects)

    async def _apply_records_async(self, records: Sequence[object]) -> TransformResult:
        fn = cast(Callable[[object], Awaitable[object]], self.fn)
        flat, fail = self.kind == "flat_map", self.on_error == "fail"
        out: list[object] = []
        rejects: list[Reject] = []
        for record in records:
            try:
                out.extend(_outputs(await fn(record), flat))
            except Exception as exc:
                if fail:
                    raise
                rejects.append(Reject(record, exc))
        return TransformResult(out, rejects)

    async def _apply_batch(self, records: Sequence[object]) -> TransformResult:
        try:
            if self.is_async:
                result = await cast(Callable[[list[object]], Awaitable[object]], self.fn)(
                    list(records)
                )
            elif self.thread:
                result = await anyio.to_thread.run_sync(self.fn, list(records))
            else:
                result = self.fn(list(records))
        except Exception as exc:
            if self.on_error == "fail":
                raise
            # The function saw the batch as a whole, so every record shares the failure.
            return TransformResult([], [Reject(record, exc) for record in records])
        if not isinstance(result, Iterable) or isinstance(result, str | bytes | dict):
            kind = type(result).__name__
            raise TypeError(f"batch transform {self.name} returned {kind}, not a list of records")
        return TransformResult(list(result), [])


_NOTHING: tuple[object, ...] = ()


def _outputs(result: object, flat: bool) -> Sequence[object]:
    """The records one call produced: none, one, or (flat) every item, fully materialised."""
    if result is None:
        return _NOTHING
    if not flat:
        return (result,)
    if not isinstance(result, Iterable) or isinstance(result, str | bytes | dict):
        raise TypeError(f"flat_map function returned {type(result).__name__}, not an iterable")
    return list(result)


def _fn_name(fn: Callable[..., object]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}:{getattr(fn, '__qualname__', repr(fn))}"
