"""Steps and flows: a DAG, checked whole before anything runs."""

from __future__ import annotations

import graphlib
from collections import Counter
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from asyncetl.core.errors import ConfigError
from asyncetl.core.settings_check import positive_int

if TYPE_CHECKING:
    from asyncetl.flow._runner import FlowResult
    from asyncetl.flow._state import FlowStateStore

__all__ = ["Flow", "Step", "StepFunction"]


class StepFunction(Protocol):
    """A step's work: awaited with no arguments; raising fails the try."""

    def __call__(self) -> Awaitable[object]: ...


@dataclass(frozen=True, slots=True)
class Step:
    """One named unit of a flow.

    :param run: awaited to do the step's work.
    :param depends_on: names of steps that must succeed first.
    :param max_tries: tries in all, the first included; retries back off
        exponentially with full jitter from ``retry_base_delay`` seconds.
    :param timeout: seconds one try may take before it is cancelled (and retried).
    :param retry_max_time: seconds after the first try past which no retry starts.
    """

    name: str
    run: StepFunction
    depends_on: tuple[str, ...] = field(default=())
    max_tries: int = 1
    timeout: float | None = None
    retry_base_delay: float = 1.0
    retry_max_delay: float = 60.0
    retry_max_time: float = 600.0

    def __post_init__(self) -> None:
        where = f"step {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a step name must be a non-empty string, not {self.name!r}")
        if isinstance(self.depends_on, str) or not all(isinstance(d, str) for d in self.depends_on):
            raise ConfigError(
                f"must be a list of step names, not {self.depends_on!r}",
                where=where,
                key="depends_on",
            )
        object.__setattr__(self, "depends_on", tuple(self.depends_on))
        positive_int(self.max_tries, where, "max_tries")
        for key in ("timeout", "retry_base_delay", "retry_max_delay", "retry_max_time"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int | float) or not value > 0):
                raise ConfigError(
                    f"must be a positive number of seconds, not {value!r}", where=where, key=key
                )
        if not callable(self.run):
            raise ConfigError(f"{self.run!r} is not callable", where=where, key="run")


class Flow:
    """Named steps with dependencies, run as a DAG.

    Duplicate names, unknown dependencies and cycles are rejected here, before
    anything runs.

    :param max_parallel: steps running at once.
    :raises ConfigError: naming the duplicates, the unknown dependencies or the cycle.
    """

    def __init__(self, name: str, steps: Sequence[Step], *, max_parallel: int = 4) -> None:
        where = f"flow {name}"
        positive_int(max_parallel, where, "max_parallel")
        if not steps:
            raise ConfigError("has no steps", where=where)
        _check_unique(steps, where)
        _check_known(steps, where)
        order = _topological(steps, where)
        by_name = {step.name: step for step in steps}
        self.name = name
        self.max_parallel = max_parallel
        #: The steps in an order where every step comes after its dependencies.
        self.steps: dict[str, Step] = {n: by_name[n] for n in order}

    def subset(self, names: Iterable[str]) -> Flow:
        """A flow of the named steps and every step they depend on, directly or not.

        :raises ConfigError: for a name that is not a step of this flow.
        """
        wanted = list(names)
        unknown = [n for n in wanted if n not in self.steps]
        if unknown:
            raise ConfigError(
                f"no step named {', '.join(map(repr, unknown))}; steps are {', '.join(self.steps)}",
                where=f"flow {self.name}",
            )
        keep: set[str] = set()
        while wanted:
            name = wanted.pop()
            if name not in keep:
                keep.add(name)
                wanted.extend(self.steps[name].depends_on)
        return Flow(
            self.name,
            [s for n, s in self.steps.items() if n in keep],
            max_parallel=self.max_parallel,
        )

    async def run(self, store: FlowStateStore | None = None, *, resume: bool = False) -> FlowResult:
        """Run the flow; see :func:`asyncetl.flow.run_flow`."""
        from asyncetl.flow._runner import run_flow

        return await run_flow(self, store, resume=resume)


def _check_unique(steps: Sequence[Step], where: str) -> None:
    twice = [name for name, count in Counter(s.name for s in steps).items() if count > 1]
    if twice:
        raise ConfigError(f"step names must be unique; duplicated: {', '.join(twice)}", where=where)


def _check_known(steps: Sequence[Step], where: str) -> None:
    names = {step.name for step in steps}
    unknown = [
        f"{step.name!r} depends on unknown step {dep!r}"
        for step in steps
        for dep in step.depends_on
        if dep not in names
    ]
    if unknown:
        raise ConfigError(
            "; ".join(unknown) + f" (steps are {', '.join(sorted(names))})", where=where
        )


def _topological(steps: Sequence[Step], where: str) -> list[str]:
    sorter = graphlib.TopologicalSorter({step.name: step.depends_on for step in steps})
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle: list[str] = list(reversed(exc.args[1]))
        raise ConfigError(
            f"steps form a cycle: {' -> '.join(cycle)} (each depends on the next)", where=where
        ) from None
