"""``validate --connect``: ask every resource of a pipeline what it would lack if it ran now.

Each resource answers :meth:`~asyncetl.Resource.check` with problems keyed by its own
settings; here they get the spec's key (``sink.table``) in front, so a line reads like
every other spec error. The resources are asked at once, each within a time limit,
and each tries its server once: an operator wants every problem, and soon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from asyncetl import Pipeline, Problem, Resource

__all__ = ["CheckReport", "check_pipeline"]

#: Seconds one resource may take to answer before it counts as unreachable.
CHECK_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What :func:`check_pipeline` found.

    :param checked: the spec key and class of each resource asked, in spec order.
    :param problems: one line per problem, ``<spec>: <key>: <what is missing>``.
    :param keyed: the same problems as ``(key, what is missing)``, for machines.
    """

    checked: list[tuple[str, str]]
    problems: list[str]
    keyed: list[tuple[str, str]] = field(default_factory=list)


async def check_pipeline(
    pipeline: Pipeline, where: str, *, time_limit: float = CHECK_TIMEOUT
) -> CheckReport:
    """Check every resource of ``pipeline`` against its system, changing nothing.

    :param where: the spec the pipeline came from, the first word of each problem.
    :param time_limit: seconds each resource may take.
    """
    parts = _resources(pipeline)
    found: dict[str, list[Problem]] = {}
    async with anyio.create_task_group() as tg:
        for key, resource in parts:
            tg.start_soon(_check_one, key, resource, time_limit, found)
    keyed = [(_key(key, problem), problem.message) for key, _ in parts for problem in found[key]]
    return CheckReport(
        checked=[(key, type(resource).__name__) for key, resource in parts],
        problems=[f"{where}: {key}: {message}" for key, message in keyed],
        keyed=keyed,
    )


def _resources(pipeline: Pipeline) -> list[tuple[str, Resource]]:
    parts: list[tuple[str, Resource | None]] = [
        ("source", pipeline.source),
        ("sink", pipeline.sink),
        ("checkpoints", pipeline.checkpoints),
        ("dead_letters", pipeline.dead_letters),
    ]
    return [(key, resource) for key, resource in parts if resource is not None]


async def _check_one(
    key: str, resource: Resource, time_limit: float, found: dict[str, list[Problem]]
) -> None:
    with anyio.move_on_after(time_limit) as scope:
        found[key] = await resource.check()
    if scope.cancelled_caught:
        found[key] = [Problem(None, f"no answer within {time_limit:g} s")]


def _key(part: str, problem: Problem) -> str:
    return part if problem.setting is None else f"{part}.{problem.setting}"
