"""Flows: named steps with dependencies, run as a DAG with bounded parallelism.

Define a :class:`Flow` of :class:`Step` objects in Python, or in TOML with
:func:`asyncetl.spec.load_flow`; run it with :meth:`Flow.run` (or :func:`run_flow`). Step
statuses persist per run in a :class:`FlowStateStore`, so a resumed run does
only what did not succeed.
"""

from asyncetl.flow._model import Flow as Flow
from asyncetl.flow._model import Step as Step
from asyncetl.flow._model import StepFunction as StepFunction
from asyncetl.flow._runner import FlowResult as FlowResult
from asyncetl.flow._runner import run_flow as run_flow
from asyncetl.flow._state import FlowRun as FlowRun
from asyncetl.flow._state import FlowStateStore as FlowStateStore
from asyncetl.flow._state import JsonFileFlowStore as JsonFileFlowStore
from asyncetl.flow._state import MemoryFlowStore as MemoryFlowStore
from asyncetl.flow._state import StepState as StepState
from asyncetl.flow._state import StepStatus as StepStatus

__all__ = [
    "Flow",
    "FlowResult",
    "FlowRun",
    "FlowStateStore",
    "JsonFileFlowStore",
    "MemoryFlowStore",
    "Step",
    "StepFunction",
    "StepState",
    "StepStatus",
    "run_flow",
]
