"""``python -m asyncetl flow FLOW`` and ``flow status FLOW``: run a flow, or show its latest run.

Both read the flow file through :func:`asyncetl.spec.load_flow` and its runs from
the same :class:`~asyncetl.flow.JsonFileFlowStore` that ``flow --resume`` continues
from, so ``flow status`` shows exactly what a resume would start from.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

import anyio
import orjson
from rich.console import Console
from rich.table import Table

from asyncetl import JsonValue, tune_gc
from asyncetl.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    on_signals,
    program,
    spec_options,
    table_width,
)
from asyncetl.core.logs import get_logger
from asyncetl.flow import FlowResult, FlowRun, JsonFileFlowStore, StepState
from asyncetl.spec import load_flow

__all__ = ["add_commands"]

_log = get_logger("asyncetl.cli")


def add_commands(subparsers: Any) -> None:
    """Add ``flow`` and ``flow status`` (parsed as ``flow-status``) to ``subparsers``."""
    options = spec_options()
    parser = subparsers.add_parser(
        "flow",
        parents=[options],
        help="run a flow of steps ('flow status FLOW' shows the latest run)",
        description="Run the flow's steps as their dependencies allow. SIGINT/SIGTERM cancels "
        "running steps and marks them pending for --resume. 'flow status FLOW' shows each "
        "step of the latest run.",
    )
    parser.add_argument("spec", metavar="FLOW", help="a flow file (TOML)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the latest run: run only steps that did not succeed",
    )
    parser.add_argument(
        "--step",
        action="append",
        metavar="NAME",
        help="run only this step and what it depends on (repeatable)",
    )
    _state_option(parser)
    parser.set_defaults(command=_flow)
    # No help=: listed under ``flow``, which main() routes ``flow status`` to.
    status = subparsers.add_parser(
        "flow-status",
        parents=[options],
        prog=program("flow status"),
        description="Show each step's status in the flow's latest run, as 'flow --resume' "
        "would continue it.",
    )
    status.add_argument("spec", metavar="FLOW", help="a flow file (TOML)")
    _state_option(status)
    status.add_argument("--json", action="store_true", help="print one JSON document")
    status.set_defaults(command=_status)


def _state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state", metavar="PATH", help="the JSON file runs persist in (default: the flow's)"
    )


async def _flow(args: argparse.Namespace) -> int:
    spec = load_flow(args.spec)
    flow = spec.flow.subset(args.step) if args.step else spec.flow
    store = JsonFileFlowStore(args.state or spec.state)
    result: FlowResult | None = None
    tune_gc()
    async with anyio.create_task_group() as tg:
        await tg.start(on_signals, functools.partial(_cancel, tg.cancel_scope))
        result = await flow.run(store, resume=args.resume)
        tg.cancel_scope.cancel()
    if result is None:
        print(
            "stopped; running steps were marked pending: run again with --resume to continue",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    title = f"flow {result.flow}, run {result.run_id}" + (" (resumed)" if result.resumed else "")
    Console(file=sys.stdout, width=table_width()).print(_steps_table(title, result.steps))
    failed = result.with_status("failed")
    if failed:
        print(
            f"error: step(s) failed: {', '.join(failed)}; fix the cause and run again with "
            "--resume",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _cancel(scope: anyio.CancelScope, name: str) -> None:
    _log.warning("cancelling running steps", signal=name)
    scope.cancel()


async def _status(args: argparse.Namespace) -> int:
    spec = load_flow(args.spec)
    path = args.state or spec.state
    store = JsonFileFlowStore(path)
    await store.open()
    try:
        run = await store.latest(spec.flow.name)
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
    if args.json:
        print(orjson.dumps(_status_document(spec.flow.name, run)).decode())
    elif run is None:
        print(f"flow {spec.flow.name}: no run recorded in {path}")
    else:
        title = f"flow {run.flow}, run {run.run_id} started {run.started_at.isoformat()}"
        Console(file=sys.stdout, width=table_width()).print(_steps_table(title, run.steps))
    return EXIT_OK


def _status_document(name: str, run: FlowRun | None) -> dict[str, JsonValue]:
    if run is None:
        return {"flow": name, "run_id": None, "started_at": None, "steps": {}}
    document: dict[str, JsonValue] = run.to_json()
    return document


def _steps_table(title: str, steps: dict[str, StepState]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("step", "status", "attempts", "seconds", "error"):
        table.add_column(column)
    for name, state in steps.items():
        seconds = "" if state.seconds is None else f"{state.seconds:.2f}"
        table.add_row(name, state.status, str(state.attempts), seconds, state.error or "")
    return table
