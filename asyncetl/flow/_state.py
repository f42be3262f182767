"""Step statuses, persisted per run so that ``--resume`` re-runs only what did not succeed."""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast

import anyio
import anyio.to_thread
import orjson

from asyncetl.core.durable import write_atomically
from asyncetl.core.errors import CheckpointError
from asyncetl.core.interfaces import Resource

__all__ = [
    "FlowRun",
    "FlowStateStore",
    "JsonFileFlowStore",
    "MemoryFlowStore",
    "StepState",
    "StepStatus",
]

StepStatus: TypeAlias = Literal["pending", "running", "succeeded", "failed", "skipped"]
_FORMAT = 1


@dataclass(slots=True)
class StepState:
    """Where one step of one run stands.

    :param attempts: tries made in this run (over resumes).
    :param error: why it failed, or which dependency kept it from running.
    """

    status: StepStatus = "pending"
    attempts: int = 0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def seconds(self) -> float | None:
        """How long the last try ran, when it finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepState:
        return cls(
            cast(StepStatus, data["status"]),
            int(data["attempts"]),
            data.get("error"),
            _when(data.get("started_at")),
            _when(data.get("finished_at")),
        )


@dataclass(slots=True)
class FlowRun:
    """One run of a flow: its id and every step's state."""

    flow: str
    run_id: str
    started_at: datetime
    steps: dict[str, StepState] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "run_id": self.run_id,
            "started_at": _iso(self.started_at),
            "steps": {name: state.to_json() for name, state in self.steps.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlowRun:
        started = _when(data["started_at"])
        assert started is not None
        steps = {name: StepState.from_json(state) for name, state in data["steps"].items()}
        return cls(data["flow"], data["run_id"], started, steps)


class FlowStateStore(Resource, abc.ABC):
    """Keeps the runs of flows."""

    @abc.abstractmethod
    async def latest(self, flow: str) -> FlowRun | None:
        """The most recent run of ``flow``, or ``None``.

        :raises CheckpointError: when stored runs cannot be read.
        """

    @abc.abstractmethod
    async def save(self, run: FlowRun) -> None:
        """Durably store ``run``, replacing an earlier save of the same run."""


class MemoryFlowStore(FlowStateStore):
    """Runs in a dict."""

    def __init__(self) -> None:
        self.runs: dict[str, list[FlowRun]] = {}

    async def latest(self, flow: str) -> FlowRun | None:
        runs = self.runs.get(flow)
        return FlowRun.from_json(runs[-1].to_json()) if runs else None

    async def save(self, run: FlowRun) -> None:
        runs = self.runs.setdefault(run.flow, [])
        copy = FlowRun.from_json(run.to_json())
        if runs and runs[-1].run_id == run.run_id:
            runs[-1] = copy
        else:
            runs.append(copy)


class JsonFileFlowStore(FlowStateStore):
    """The last ``keep`` runs of every flow in one JSON file, replaced atomically on each save.

    :param path: the JSON file; its directory must exist.
    """

    def __init__(self, path: str | os.PathLike[str], *, keep: int = 20) -> None:
        self.path = Path(path)
        self.keep = keep
        self._lock = anyio.Lock()

    async def latest(self, flow: str) -> FlowRun | None:
        document = await anyio.to_thread.run_sync(_read, self.path)
        runs = [r for r in document["runs"] if r.get("flow") == flow]
        try:
            return FlowRun.from_json(runs[-1]) if runs else None
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"flow state file {self.path} has a malformed run ({exc}); "
                "delete it to start the flow over"
            ) from exc

    async def save(self, run: FlowRun) -> None:
        snapshot = run.to_json()  # here, not in the thread: the run changes as steps finish
        async with self._lock:
            await anyio.to_thread.run_sync(self._save, snapshot)

    def _save(self, run: dict[str, Any]) -> None:
        document = _read(self.path)
        others = [r for r in document["runs"] if r.get("run_id") != run["run_id"]]
        mine = [r for r in others if r.get("flow") == run["flow"]]
        mine = mine[max(0, len(mine) - self.keep + 1) :]
        runs = [r for r in others if r.get("flow") != run["flow"]] + mine + [run]
        _write_atomically(
            self.path, orjson.dumps({"format": _FORMAT, "runs": runs}, option=orjson.OPT_INDENT_2)
        )


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {"format": _FORMAT, "runs": []}
    except OSError as exc:
        raise CheckpointError(f"cannot read flow state file {path}: {exc.strerror}") from exc
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(
            f"flow state file {path} is not valid JSON ({exc}); delete it to start the flow over"
        ) from exc
    if (
        not isinstance(document, dict)
        or document.get("format") != _FORMAT
        or not isinstance(document.get("runs"), list)
    ):
        raise CheckpointError(
            f"{path} is not an asyncetl flow state file (format {_FORMAT}); "
            "delete it to start the flow over"
        )
    return document


def _write_atomically(path: Path, content: bytes) -> None:
    try:
        write_atomically(path, content)
    except OSError as exc:
        raise CheckpointError(f"cannot write flow state file {path}: {exc.strerror}") from exc


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _when(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None
