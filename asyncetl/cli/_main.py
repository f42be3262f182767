"""``python -m asyncetl``: run, validate and inspect pipelines; run backfills and flows.

A thin shell over :mod:`asyncetl.spec` and :class:`~asyncetl.Pipeline`; the ``backfill`` and
``backfill status`` commands come from :mod:`asyncetl.cli._backfill`, ``flow`` and ``flow
status`` from :mod:`asyncetl.cli._flow`, ``cdc`` from :mod:`asyncetl.cli._cdc`,
``checkpoint`` from :mod:`asyncetl.cli._checkpoint`, ``status`` from
:mod:`asyncetl.cli._status` and ``dlq`` from :mod:`asyncetl.cli._dlq`. Commands that read
state take ``--json`` and then print one JSON document. Every command sets ``command`` to an
async function of the parsed arguments returning the exit code, and :func:`main` runs it
with logging set up from ``--log-format``/``--log-level``, else the spec's ``[logging]``
table, after reading the ``--env-file`` files that ``${VAR}`` references may use. Exit
codes: 0 success or graceful stop, 1 runtime failure, 2 bad spec (or a setting a stage
rejects once running), 130 stopped before draining (by a second signal, or when the grace
period ran out). Failures print one ``error: …`` line on stderr, never a traceback
(``--log-level debug`` logs it).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import anyio
import orjson

from asyncetl import (
    AsyncetlError,
    ConfigError,
    MemoryCheckpointStore,
    PermanentError,
    Pipeline,
    RunStats,
    StageError,
    __version__,
    tune_gc,
)
from asyncetl.cli._backfill import add_commands
from asyncetl.cli._cdc import add_commands as add_cdc_commands
from asyncetl.cli._checkpoint import add_commands as add_checkpoint_commands
from asyncetl.cli._common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    on_signals,
    port_number,
    positive_seconds,
    program,
    spec_options,
)
from asyncetl.cli._dlq import add_commands as add_dlq_commands
from asyncetl.cli._flow import add_commands as add_flow_commands
from asyncetl.cli._outcome import outcome_now, record_outcome
from asyncetl.cli._progress import show_progress
from asyncetl.cli._status import add_command as add_status_command
from asyncetl.core.errors import RESET_HINT
from asyncetl.core.logs import get_logger
from asyncetl.spec import (
    CheckReport,
    check_pipeline,
    load_pipeline,
    logging_settings,
    redact,
    use_env_file,
)
from asyncetl.spec.pipeline import is_attribute_spec
from asyncetl.status import configure_logging

__all__ = ["main"]

_log = get_logger("asyncetl.cli")

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = _parser().parse_args(_routed(sys.argv[1:] if argv is None else argv))
    command: Command = args.command
    try:
        for env_file in getattr(args, "env_file", ()):
            use_env_file(env_file)
        _setup_logging(args)
        return anyio.run(command, args)
    except ConfigError as exc:
        _error(_config_message(exc, args, show_how=False))
        return EXIT_CONFIG
    except StageError as exc:
        if isinstance(exc.cause, ConfigError):  # a setting a stage could judge only once running
            _error(_config_message(exc.cause, args))
            return EXIT_CONFIG
        _error(
            _keyed(exc.cause, args, str(exc)) if isinstance(exc.cause, PermanentError) else str(exc)
        )
        return EXIT_FAILED
    except PermanentError as exc:
        _error(_keyed(exc, args))
        return EXIT_FAILED
    except AsyncetlError as exc:
        _error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        _log.debug("unexpected error", exc_info=exc)
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED


def _routed(argv: Sequence[str]) -> list[str]:
    """``backfill status …`` and ``flow status …`` as the commands that parse them.

    ``backfill`` and ``flow`` take a spec file where a sub-command would stand, so
    ``status`` is recognised here, as every other command's ``status``/``list`` reads.
    """
    words = list(argv)
    if len(words) >= 2 and words[0] in ("backfill", "flow") and words[1] == "status":
        return [f"{words[0]}-status", *words[2:]]
    return words


def _config_message(error: ConfigError, args: argparse.Namespace, *, show_how: bool = True) -> str:
    """The error, and for a committed position the stage cannot use, how to move it, once.

    A stage that said how to reset names the spec in its hint; else, with
    ``show_how``, the commands that read and move the position follow the error.
    """
    spec = getattr(args, "spec", None)
    message = str(error)
    if error.key != "position" or spec is None:
        return message
    if RESET_HINT in message:
        return message.replace(RESET_HINT, RESET_HINT.replace("SPEC", str(spec)))
    return f"{message} ({program('checkpoint show|reset')} {spec})" if show_how else message


def _keyed(error: PermanentError, args: argparse.Namespace, message: str | None = None) -> str:
    """The error (or ``message`` about it), after the spec file and key of the setting it
    is about, as config errors are."""
    spec = getattr(args, "spec", None)
    message = str(error) if message is None else message
    if error.key is None or spec is None:
        return message
    return f"{spec}: {error.key}: {message}"


# -- arguments ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, parents=[spec_options()])
    common.add_argument(
        "spec",
        metavar="SPEC",
        help="a TOML spec file, or module:attribute naming a Pipeline or a function returning one",
    )
    parser = argparse.ArgumentParser(
        prog=program(),
        description="Streaming ETL pipelines, backfills and flows from spec files.",
    )
    parser.add_argument("--version", action="version", version=f"asyncetl {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        parents=[common],
        help="run a pipeline",
        description="Run a pipeline until its source is exhausted or a "
        "signal stops it (SIGINT/SIGTERM: drain and commit; "
        "a second signal: stop at once).",
    )
    run.add_argument(
        "--stop-when-idle",
        type=positive_seconds,
        metavar="SECONDS",
        help="stop once the source had nothing new for this long",
    )
    run.add_argument(
        "--status-port",
        type=port_number,
        metavar="PORT",
        help="serve /metrics (Prometheus), /health and a status page on this port",
    )
    run.add_argument(
        "--ready-limit",
        type=positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="/ready answers 503 once read batches waited this long for a commit (default 60)",
    )
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="show no progress: no live display in a terminal, no progress log lines elsewhere",
    )
    run.add_argument(
        "--status-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address for --status-port (default 127.0.0.1)",
    )
    run.add_argument(
        "--otel-endpoint",
        metavar="URL",
        default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        help="send metrics and batch spans over OTLP/HTTP to this collector (needs "
        "asyncetl[otel]; default $OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    run.set_defaults(command=_run)
    validate = commands.add_parser(
        "validate",
        parents=[common],
        help="check a spec",
        description="Build the pipeline without running it; with --connect, also ask "
        "every source, sink and store whether what it needs exists or can be created.",
    )
    validate.add_argument(
        "--connect",
        action="store_true",
        help="also connect (once, without retries) and check tables, streams and rights; "
        "prints every problem and exits 2 if there is any",
    )
    validate.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"pipeline", "ok", "checked": [{"key", "type"}], '
        '"problems": [{"key", "message"}]} (the exit code is the same)',
    )
    validate.set_defaults(command=_validate)
    add_status_command(commands, common)
    add_dlq_commands(commands, common)
    add_cdc_commands(commands)
    add_checkpoint_commands(commands)
    add_commands(commands)
    add_flow_commands(commands)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    settings = logging_settings(args.spec)
    configure_logging(args.log_format or settings.format, args.log_level or settings.level)


def _error(message: str) -> None:
    # The last guard: no env-file value, ${file:…} content or URL password is printed.
    print("error: " + " ".join(redact(message).split()), file=sys.stderr)


# -- run ---------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> int:
    pipeline = await load_pipeline(args.spec)
    if not is_attribute_spec(args.spec) and isinstance(pipeline.checkpoints, MemoryCheckpointStore):
        # A spec file without [checkpoints] is easy to write and quietly reads (and, into
        # an appending sink, loads) everything again on every run: say so once. A
        # ``module:attribute`` pipeline chose its stores in code.
        _log.warning(
            f"positions are kept in memory only: the next run of {args.spec} starts from "
            "the beginning again; add a [checkpoints] table to resume where a run ends",
            pipeline=pipeline.name,
        )
    tune_gc()
    if args.stop_when_idle is not None:
        pipeline.stop_when_idle = args.stop_when_idle
    live = not args.no_progress and sys.stderr.isatty()
    # A live display shows what the progress lines would: one or the other, or neither.
    pipeline.log_progress = not args.no_progress and not live
    signals: list[str] = []
    try:
        stats = await _run_beside_shells(pipeline, args, signals, live=live)
    except Exception as exc:
        await record_outcome(pipeline, outcome_now("failed", exc))
        raise
    stopped = stats.stopped_early or bool(signals)
    await record_outcome(pipeline, outcome_now("stopped" if stopped else "finished"))
    print(_summary(pipeline, stats, signals))
    return EXIT_INTERRUPTED if stats.stopped_early else EXIT_OK


async def _run_beside_shells(
    pipeline: Pipeline, args: argparse.Namespace, signals: list[str], *, live: bool
) -> RunStats:
    """Run ``pipeline`` with its signal handler, status server, live display and export."""
    try:
        async with _otlp_export(pipeline, args.otel_endpoint), anyio.create_task_group() as tg:
            await tg.start(on_signals, functools.partial(_stop, pipeline, signals))
            if args.status_port is not None:
                from asyncetl.status import serve_status  # with its HTTP stack, only when asked

                port = await tg.start(
                    functools.partial(
                        serve_status,
                        pipeline,
                        host=args.status_host,
                        port=args.status_port,
                        ready_limit=args.ready_limit,
                    )
                )
                _log.info("status page", url=f"http://{args.status_host}:{port}/")
            if live:
                tg.start_soon(show_progress, pipeline, sys.stderr)
            stats = await pipeline.run()
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Only the run can fail here: report its error, not the task group around it.
        if len(group.exceptions) == 1:
            raise group.exceptions[0]  # noqa: B904 -- keeps the error's own cause chain
        raise
    return stats


def _otlp_export(pipeline: Pipeline, endpoint: str | None) -> AbstractAsyncContextManager[None]:
    if endpoint is None:
        return nullcontext()
    from asyncetl.status._otlp import open_otlp_export  # the optional otel extra

    return open_otlp_export(pipeline, endpoint)


def _stop(pipeline: Pipeline, received: list[str], name: str) -> None:
    received.append(name)
    hard = len(received) > 1
    _log.warning(
        "stopping at once" if hard else "stopping; draining in-flight batches", signal=name
    )
    pipeline.stop(immediate=hard)


def _summary(pipeline: Pipeline, stats: RunStats, signals: Sequence[str]) -> str:
    if stats.stopped_early:
        how = "stopped before draining (what was not committed is read again next run)"
    elif signals:
        how = f"stopped by {signals[0]}"
    else:
        how = "finished"
    counters = {
        "records_in": stats.records_in,
        "records_out": stats.records_out,
        "unchanged": stats.unchanged,
        "dead_lettered": stats.dead_lettered,
        "position": _position(stats),
    }  # named as in /health, /metrics (asyncetl_<name>_total) and the logs
    lines = [f"pipeline {pipeline.name} {how} in {stats.elapsed:.2f} s"]
    lines += [f"  {name:<15}{value}" for name, value in counters.items()]
    return "\n".join(lines)


def _position(stats: RunStats) -> str:
    """The position the next run resumes after: this run's last commit, else where it began."""
    position = stats.position
    if position is None:
        if stats.batches_committed:
            return "none (committed: the next run starts from the beginning)"
        return "none (nothing committed yet)"
    if isinstance(position, str):
        return position
    return orjson.dumps(position).decode()


# -- validate ----------------------------------------------------------------------------


async def _validate(args: argparse.Namespace) -> int:
    pipeline = await load_pipeline(args.spec)
    if not args.connect:
        if args.json:
            print(_validation_json(pipeline, CheckReport([], [])))
        else:
            print(f"ok: {redact(pipeline.name)}")
        return EXIT_OK
    report = await check_pipeline(pipeline, args.spec)
    if args.json:
        print(_validation_json(pipeline, report))
        return EXIT_CONFIG if report.problems else EXIT_OK
    for problem in report.problems:
        _error(problem)
    if report.problems:
        return EXIT_CONFIG
    checked = ", ".join(f"{key} ({kind})" for key, kind in report.checked)
    print(f"ok: {redact(pipeline.name)}: connected and checked {checked}")
    return EXIT_OK


def _validation_json(pipeline: Pipeline, report: CheckReport) -> str:
    """What ``validate --json`` prints: one JSON object, secrets hidden."""
    document = {
        "pipeline": redact(pipeline.name),
        "ok": not report.keyed,
        "checked": [{"key": key, "type": kind} for key, kind in report.checked],
        "problems": [{"key": key, "message": redact(text)} for key, text in report.keyed],
    }
    return orjson.dumps(document).decode()
