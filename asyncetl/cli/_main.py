"""``python -m asyncetl``: run, validate and inspect pipelines; run backfills and flows.

A thin shell over :mod:`asyncetl.spec`, :class:`~asyncetl.Pipeline` and
:mod:`asyncetl.core.replay`; the ``backfill``, ``backfill-status`` and ``flow``
commands come from :mod:`asyncetl.cli._backfill`, ``cdc`` from :mod:`asyncetl.cli._cdc` and
``checkpoint`` from :mod:`asyncetl.cli._checkpoint`. Every command sets ``command``
to an async function of the parsed arguments returning the exit code, and
:func:`main` runs it with logging set up from ``--log-format``/``--log-level``,
else the spec's ``[logging]`` table, after reading the ``--env-file`` files that
``${VAR}`` references may use. Exit codes: 0 success or graceful stop, 1 runtime
failure, 2 bad spec (or a setting a stage rejects once running), 130 stopped before
draining (by a second signal, or when the grace period ran out). Failures print one
``error: …`` line on stderr, never a traceback (``--log-level debug`` logs it).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

import anyio
import orjson

from asyncetl import (
    AsyncetlError,
    ConfigError,
    DeadLetter,
    JsonValue,
    Pipeline,
    ReplayResult,
    RunStats,
    StageError,
    replay_dead_letters,
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
    positive_int,
    positive_seconds,
    spec_options,
)
from asyncetl.core.logs import get_logger
from asyncetl.spec import load_pipeline, logging_settings, redact, use_env_file
from asyncetl.status import configure_logging, serve_status

__all__ = ["main"]

_log = get_logger("asyncetl.cli")

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = _parser().parse_args(argv)
    command: Command = args.command
    try:
        for env_file in getattr(args, "env_file", ()):
            use_env_file(env_file)
        _setup_logging(args)
        return anyio.run(command, args)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_CONFIG
    except StageError as exc:
        if isinstance(exc.cause, ConfigError):  # a setting a stage could judge only once running
            _error(_config_message(exc.cause, args))
            return EXIT_CONFIG
        _error(str(exc))
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


def _config_message(error: ConfigError, args: argparse.Namespace) -> str:
    """The error, and for a committed position the stage cannot use, how to move it."""
    spec = getattr(args, "spec", None)
    if error.key != "position" or spec is None:
        return str(error)
    return f"{error} (python -m asyncetl checkpoint show|reset {spec})"


# -- arguments ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, parents=[spec_options()])
    common.add_argument(
        "spec",
        metavar="SPEC",
        help="a TOML spec file, or module:attribute naming a Pipeline or a function returning one",
    )
    parser = argparse.ArgumentParser(
        prog="python -m asyncetl",
        description="Streaming ETL pipelines, backfills and flows from spec files.",
    )
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
        type=int,
        metavar="PORT",
        help="serve /metrics (Prometheus), /health and a status page on this port",
    )
    run.add_argument(
        "--status-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address for --status-port (default 127.0.0.1)",
    )
    run.set_defaults(command=_run)
    validate = commands.add_parser(
        "validate",
        parents=[common],
        help="check a spec",
        description="Build the pipeline without running it.",
    )
    validate.set_defaults(command=_validate)
    dlq = commands.add_parser(
        "dlq",
        help="inspect and replay dead letters",
        description="Inspect and replay dead letters.",
    )
    dlq_commands = dlq.add_subparsers(title="commands", required=True, metavar="COMMAND")
    listing = dlq_commands.add_parser(
        "list",
        parents=[common],
        help="show dead letters",
        description="Show the pipeline's dead letters, oldest first.",
    )
    listing.add_argument(
        "--limit",
        type=positive_int,
        default=100,
        metavar="N",
        help="show at most N letters (default 100)",
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(command=_dlq_list)
    replay = dlq_commands.add_parser(
        "replay",
        parents=[common],
        help="send dead letters through the pipeline again",
        description="Send each dead letter through the pipeline's transforms and sink again "
        "from the stage where it failed; remove those that succeed and keep the "
        "others.",
    )
    replay.set_defaults(command=_dlq_replay)
    add_cdc_commands(commands)
    add_checkpoint_commands(commands)
    add_commands(commands)
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
    tune_gc()
    if args.stop_when_idle is not None:
        pipeline.stop_when_idle = args.stop_when_idle
    signals: list[str] = []
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(on_signals, functools.partial(_stop, pipeline, signals))
            if args.status_port is not None:
                port = await tg.start(
                    functools.partial(
                        serve_status, pipeline, host=args.status_host, port=args.status_port
                    )
                )
                _log.info("status page", url=f"http://{args.status_host}:{port}/")
            stats = await pipeline.run()
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Only the run can fail here: report its error, not the task group around it.
        if len(group.exceptions) == 1:
            raise group.exceptions[0]  # noqa: B904 -- keeps the error's own cause chain
        raise
    print(_summary(pipeline, stats, signals))
    return EXIT_INTERRUPTED if stats.stopped_early else EXIT_OK


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
    lines = [
        f"pipeline {pipeline.name} {how} in {stats.elapsed:.2f} s",
        f"  records in     {stats.records_in}",
        f"  loaded         {stats.records_out}",
        f"  dead-lettered  {stats.dead_lettered}",
        f"  position       {_position(stats.position)}",
    ]
    return "\n".join(lines)


def _position(position: JsonValue) -> str:
    if position is None:
        return "none (nothing committed yet)"
    if isinstance(position, str):
        return position
    return orjson.dumps(position).decode()


# -- validate and dlq --------------------------------------------------------------------


async def _validate(args: argparse.Namespace) -> int:
    pipeline = await load_pipeline(args.spec)
    print(f"ok: {redact(pipeline.name)}")
    return EXIT_OK


async def _dlq_list(args: argparse.Namespace) -> int:
    pipeline = await load_pipeline(args.spec)
    store = pipeline.dead_letters
    if store is None:
        raise ConfigError("the spec has no [dead_letters] store", where=str(args.spec))
    await store.open()
    try:
        letters = await store.list(pipeline.name, limit=args.limit)
    finally:
        with anyio.move_on_after(10, shield=True):
            await store.close()
    if args.json:
        for letter in letters:
            print(orjson.dumps(_letter_dict(letter)).decode())
    else:
        print(_letter_table(pipeline.name, letters, args.limit))
    return EXIT_OK


async def _dlq_replay(args: argparse.Namespace) -> int:
    pipeline = await load_pipeline(args.spec)
    result = await replay_dead_letters(pipeline)
    print(_replay_report(result))
    return EXIT_OK


def _letter_dict(letter: DeadLetter) -> dict[str, JsonValue]:
    return {
        "id": letter.id,
        "time": letter.time.isoformat(),
        "pipeline": letter.pipeline,
        "stage": letter.stage,
        "error_type": letter.error_type,
        "error": letter.error,
        "record": letter.record,
        "position": letter.position,
    }


def _letter_table(name: str, letters: Sequence[DeadLetter], limit: int) -> str:
    if not letters:
        return f"no dead letters for pipeline {name}"
    header = ("ID", "TIME", "STAGE", "ERROR TYPE", "ERROR", "RECORD")
    rows = [
        (
            letter.id or "",
            _time(letter.time),
            letter.stage,
            letter.error_type,
            _cut(letter.error, 48),
            _cut(_record(letter.record), 60),
        )
        for letter in letters
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    more = "; there may be more, see --limit" if len(letters) == limit else ""
    lines.append(f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''} shown{more}")
    return "\n".join(lines)


def _replay_report(result: ReplayResult) -> str:
    lines = [
        f"replayed {result.attempted} dead letters: {len(result.removed)} loaded and removed, "
        f"{len(result.failed)} still failing and kept"
    ]
    lines += [
        f"  {failure.letter.id}  {failure.stage}  {' '.join(failure.error.split())}"
        for failure in result.failed
    ]
    return "\n".join(lines)


def _record(record: JsonValue) -> str:
    """A record as text: a string (a raw line, say) as it is, anything else as JSON."""
    return record if isinstance(record, str) else orjson.dumps(record).decode()


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
