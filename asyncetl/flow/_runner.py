"""Running a flow: each step once its dependencies succeeded, ``max_parallel`` at a time."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from asyncetl.core.logs import get_logger
from asyncetl.core.tries import run_tries
from asyncetl.flow._model import Flow, Step
from asyncetl.flow._state import FlowRun, FlowStateStore, MemoryFlowStore, StepState

__all__ = ["FlowResult", "run_flow"]

_log = get_logger("asyncetl.flow")


@dataclass(frozen=True, slots=True)
class FlowResult:
    """How a run of a flow ended.

    :param steps: every step's state, in dependency order.
    :param resumed: this run continued an earlier one.
    """

    flow: str
    run_id: str
    steps: dict[str, StepState]
    elapsed: float
    resumed: bool

    @property
    def ok(self) -> bool:
        """Whether every step succeeded."""
        return all(state.status == "succeeded" for state in self.steps.values())

    def with_status(self, status: str) -> list[str]:
        """Names of the steps with ``status``."""
        return [name for name, state in self.steps.items() if state.status == status]


async def run_flow(
    flow: Flow, store: FlowStateStore | None = None, *, resume: bool = False
) -> FlowResult:
    """Run ``flow``'s steps as their dependencies allow, persisting every status change.

    A step runs once all its dependencies succeeded; when one of them failed
    or was skipped, the step is marked skipped and not run, while unrelated
    branches go on. With ``resume``, the latest run of the flow continues:
    steps that succeeded in it are not run again. Cancelling the caller marks
    running steps pending again, so a resumed run takes them up.

    :param store: where runs persist (default: in memory, so nothing to resume).
    :raises CheckpointError: when the store cannot be read or written.
    """
    store = store or MemoryFlowStore()
    started = time.monotonic()
    await store.open()
    try:
        run, resumed = await _begin(flow, store, resume)
        await _Scheduler(flow, store, run).run()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await store.aclose()
    steps = {name: run.steps[name] for name in flow.steps}
    return FlowResult(flow.name, run.run_id, steps, time.monotonic() - started, resumed)


async def _begin(flow: Flow, store: FlowStateStore, resume: bool) -> tuple[FlowRun, bool]:
    latest = await store.latest(flow.name) if resume else None
    if latest is None:
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
        run = FlowRun(flow.name, run_id, datetime.now(UTC))
    else:
        run = latest
    for name in flow.steps:
        state = run.steps.get(name)
        if state is None or state.status != "succeeded":
            run.steps[name] = StepState(attempts=state.attempts if state else 0)
    await store.save(run)
    if latest is not None:
        _log.info(
            "resuming flow",
            flow=flow.name,
            run_id=run.run_id,
            done=[n for n in flow.steps if run.steps[n].status == "succeeded"],
        )
    return run, latest is not None


class _Scheduler:
    """One task per step, each waiting for its dependencies, all sharing one limiter."""

    def __init__(self, flow: Flow, store: FlowStateStore, run: FlowRun) -> None:
        self.flow = flow
        self.store = store
        self.run_state = run
        self.done = {name: anyio.Event() for name in flow.steps}
        self.limiter = anyio.CapacityLimiter(flow.max_parallel)

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            for step in self.flow.steps.values():
                tg.start_soon(self._step, step)

    async def _step(self, step: Step) -> None:
        state = self.run_state.steps[step.name]
        try:
            if state.status == "succeeded":
                return
            for dependency in step.depends_on:
                await self.done[dependency].wait()
            blocked = [d for d in step.depends_on if self.run_state.steps[d].status != "succeeded"]
            if blocked:
                await self._skip(step, state, blocked[0])
                return
            async with self.limiter:
                await self._execute(step, state)
        finally:
            self.done[step.name].set()

    async def _skip(self, step: Step, state: StepState, dependency: str) -> None:
        why = self.run_state.steps[dependency].status
        state.status, state.error = "skipped", f"not run: dependency {dependency!r} {why}"
        _log.warning("step skipped", flow=self.flow.name, step=step.name, reason=state.error)
        await self.store.save(self.run_state)

    async def _execute(self, step: Step, state: StepState) -> None:
        state.status, state.error = "running", None
        state.started_at, state.finished_at = datetime.now(UTC), None
        await self.store.save(self.run_state)
        _log.info("step started", flow=self.flow.name, step=step.name)
        try:
            error = await self._tries(step, state)
        except anyio.get_cancelled_exc_class():
            state.status, state.error = "pending", "interrupted; it runs again on --resume"
            with anyio.CancelScope(shield=True):
                await self.store.save(self.run_state)
            raise
        state.finished_at = datetime.now(UTC)
        state.status, state.error = ("succeeded", None) if error is None else ("failed", error)
        await self.store.save(self.run_state)
        if error is None:
            _log.info(
                "step succeeded",
                flow=self.flow.name,
                step=step.name,
                seconds=round(state.seconds or 0.0, 3),
            )
        else:
            _log.error(
                "step failed",
                flow=self.flow.name,
                step=step.name,
                error=error,
                attempts=state.attempts,
            )

    async def _tries(self, step: Step, state: StepState) -> str | None:
        async def job() -> None:
            state.attempts += 1
            await step.run()

        log = _log.bind(flow=self.flow.name, step=step.name)
        return await run_tries(job, step, noun="step", log=log)
