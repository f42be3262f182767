"""Flows from TOML files.

::

    [flow]
    name = "nightly"                 # default: the file's stem
    max_parallel = 2
    state = "nightly.flow.json"      # where runs persist, for --resume

    [[steps]]
    name = "extract"
    run = "flow_steps:extract"       # an async function, or a pipeline spec file (*.toml)
    max_tries = 3
    timeout = 60

    [steps.params]                   # keyword arguments of the function
    rows = 1000

    [[steps]]
    name = "load"
    run = "flow_steps:load"
    depends_on = ["extract"]

``${VAR}`` references are filled in from the environment, as in pipeline specs.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncetl import ConfigError
from asyncetl.flow import Flow, Step, StepFunction
from asyncetl.spec._files import (
    bind_params,
    check_keys,
    import_function,
    read_toml,
    substitute,
    typed,
)
from asyncetl.spec._secrets import hiding_secrets
from asyncetl.spec.pipeline import load_pipeline

__all__ = ["FlowSpec", "PipelineStep", "load_flow"]

_TOP = {"flow", "steps", "logging"}
_FLOW = {"name", "max_parallel", "state"}
_STEP = {
    "name",
    "run",
    "depends_on",
    "max_tries",
    "timeout",
    "retry_base_delay",
    "retry_max_delay",
    "retry_max_time",
    "params",
}
_NUMBERS = ("timeout", "retry_base_delay", "retry_max_delay", "retry_max_time")


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """A flow read from a file, and where its runs persist."""

    flow: Flow
    state: str


@hiding_secrets
def load_flow(path: str | os.PathLike[str]) -> FlowSpec:
    """Read a flow file and check it whole (names, dependencies, cycles, functions).

    :raises ConfigError: naming the file and the key or steps at fault.
    """
    where = str(path)
    document = substitute(read_toml(path, what="file"), where, "")
    check_keys(document, _TOP, where, "")
    header = document.get("flow", {})
    if not isinstance(header, dict):
        raise ConfigError("expected a table", where=where, key="flow")
    check_keys(header, _FLOW, where, "flow")
    name = typed(header, "name", str, where, "flow") or Path(path).stem
    steps = document.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ConfigError("needs at least one [[steps]] table", where=where, key="steps")
    directory = Path(path).resolve().parent
    built = [_step(table, i, where, directory) for i, table in enumerate(steps)]
    try:
        flow = Flow(
            name, built, max_parallel=_or(typed(header, "max_parallel", int, where, "flow"), 4)
        )
    except ConfigError as exc:
        raise ConfigError(str(exc), where=where) from None
    state = typed(header, "state", str, where, "flow") or f"{name}.flow.json"
    return FlowSpec(flow, state)


def _step(table: object, index: int, where: str, directory: Path) -> Step:
    key = f"steps[{index}]"
    if not isinstance(table, dict):
        raise ConfigError("expected a table", where=where, key=key)
    check_keys(table, _STEP, where, key)
    name = typed(table, "name", str, where, key)
    run = typed(table, "run", str, where, key)
    if not name or not run:
        raise ConfigError("every step needs a name and a run", where=where, key=key)
    key = f"steps.{name}"
    depends_on = typed(table, "depends_on", list, where, key) or []
    numbers = {
        n: v for n in _NUMBERS if (v := typed(table, n, (int, float), where, key)) is not None
    }
    params = typed(table, "params", dict, where, key) or {}
    function = _function(run, params, where, key, directory)
    try:
        return Step(
            name,
            function,
            depends_on=tuple(depends_on),
            max_tries=_or(typed(table, "max_tries", int, where, key), 1),
            **numbers,
        )
    except ConfigError as exc:
        raise ConfigError(str(exc), where=where) from None


def _function(
    run: str, params: dict[str, Any], where: str, key: str, directory: Path
) -> StepFunction:
    if run.endswith(".toml"):
        if params:
            raise ConfigError(
                "params apply to a function, not a pipeline spec", where=where, key=f"{key}.params"
            )
        return PipelineStep(run)
    fn = import_function(run, where, f"{key}.run", directory)
    bind_params(fn, 0, params, where, f"{key}.params")
    return functools.partial(fn, **params)


class PipelineStep:
    """A step that builds a pipeline from a spec file and runs it until its source is exhausted.

    :param spec: the pipeline spec file.
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec

    async def __call__(self) -> None:
        pipeline = await load_pipeline(self.spec)
        await pipeline.run()


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
