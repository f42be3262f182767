"""The ``backfill`` and ``backfill status`` commands of ``python -m asyncetl``.

:func:`add_commands` adds them to the main parser of :mod:`asyncetl.cli`; each
sets ``command`` to an async function of the parsed arguments returning the exit
code, which :func:`asyncetl.cli.main` runs. Exit codes: 0 success or graceful
stop, 1 a partition or step failed, 2 bad spec or arguments (one ``error: …``
line), 130 stopped hard by a second signal.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio
import orjson
from rich.console import Console

from asyncetl import ConfigError, JsonValue, tune_gc
from asyncetl.backfill import (
    EVERY,
    Backfill,
    PartitionState,
    Reset,
    Scope,
    make_partitions,
    open_progress,
    summary_table,
)
from asyncetl.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    on_signals,
    positive_int,
    positive_seconds,
    program,
    spec_options,
    table_width,
)
from asyncetl.core.logs import get_logger
from asyncetl.spec import backfill_store_at, load_backfill_spec

__all__ = ["add_commands"]

_log = get_logger("asyncetl.cli")


def add_commands(subparsers: Any) -> None:
    """Add ``backfill`` and ``backfill status`` (parsed as ``backfill-status``) to ``subparsers``.

    :param subparsers: what ``ArgumentParser.add_subparsers`` returned.
    """
    options = spec_options()
    _add_backfill(subparsers, options)
    _add_status(subparsers, options)


def _add_backfill(subparsers: Any, options: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "backfill",
        parents=[options],
        help="run a partitioned backfill ('backfill status SPEC' shows its partitions)",
        description="Run the spec's job once per partition of [START, END], PARALLEL at a time, "
        "recording every partition's status so that a re-run does only what is "
        "left. SIGINT/SIGTERM: claim nothing more and let running partitions "
        "finish within the grace period; a second signal: hand them back now.",
    )
    parser.add_argument("spec", metavar="SPEC", help="a backfill spec file (TOML)")
    _add_range(parser)
    parser.add_argument(
        "--parallel",
        type=positive_int,
        metavar="N",
        help="partitions running at once in this worker (default: the spec's, else 4)",
    )
    parser.add_argument("--order", choices=("oldest", "newest"), help="which partitions first")
    parser.add_argument(
        "--max-tries",
        type=positive_int,
        metavar="N",
        help="tries per partition, the first included",
    )
    parser.add_argument(
        "--lease",
        type=positive_seconds,
        metavar="SECONDS",
        help="how long a claim lasts unless renewed (default 60)",
    )
    parser.add_argument(
        "--grace-period",
        type=positive_seconds,
        metavar="SECONDS",
        help="how long running partitions may take to finish after a stop",
    )
    parser.add_argument("--worker", metavar="ID", help="this worker's id in the store")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        action="store_const",
        dest="reset",
        const="none",
        help="run partitions not yet run or interrupted (the default)",
    )
    mode.add_argument(
        "--rerun-failed",
        action="store_const",
        dest="reset",
        const="failed",
        help="also run again partitions that failed",
    )
    mode.add_argument(
        "--force",
        action="store_const",
        dest="reset",
        const="all",
        help="run every partition again, succeeded ones included (with several workers, "
        "give it to the first one only)",
    )
    parser.set_defaults(command=_backfill, reset="none")


def _add_status(subparsers: Any, options: argparse.ArgumentParser) -> None:
    # No help=: listed under ``backfill``, which main() routes ``backfill status`` to; the
    # name ``backfill-status`` still works as it always did.
    parser = subparsers.add_parser(
        "backfill-status",
        parents=[options],
        prog=program("backfill status"),
        description="Show how many partitions of the backfill are in each status, and every "
        "partition that did not succeed.",
    )
    parser.add_argument("spec", metavar="SPEC", help="a backfill spec file (TOML)")
    _add_range(parser, required=False)
    parser.add_argument("--all", action="store_true", help="list succeeded partitions too")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document with every partition"
    )
    parser.set_defaults(command=_status)


def _add_range(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--start",
        metavar="WHEN",
        help="first partition: a date, a datetime, or an integer for --every int",
    )
    parser.add_argument("--end", metavar="WHEN", help="last partition, included")
    parser.add_argument("--every", choices=EVERY, help="partition size (default: the spec's)")
    parser.add_argument(
        "--size", type=positive_int, metavar="N", help="integers per partition, with --every int"
    )
    parser.add_argument(
        "--store",
        metavar="PATH_OR_DSN",
        help="a SQLite file or a postgresql:// DSN (default: the spec's)",
    )


# -- backfill ---------------------------------------------------------------------------


async def _backfill(args: argparse.Namespace) -> int:
    spec = load_backfill_spec(args.spec)
    start, end = args.start or spec.start, args.end or spec.end
    if start is None or end is None:
        raise ConfigError(
            "give the range with --start and --end (or start and end in the spec)", where=args.spec
        )
    partitions = make_partitions(start, end, args.every or spec.every, size=args.size or spec.size)
    options = spec.runner_options()
    for name in ("parallel", "max_tries", "lease", "grace_period", "order", "worker"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    options.setdefault("order", spec.order)
    reset: Reset = args.reset
    backfill = Backfill(
        spec.name,
        partitions,
        spec.job,
        backfill_store_at(args.store or spec.store),
        reset=reset,
        progress=open_progress(sys.stderr),
        **options,
    )
    signals: list[str] = []
    tune_gc()
    async with anyio.create_task_group() as tg:
        await tg.start(on_signals, functools.partial(_stop, backfill, signals))
        result = await backfill.run()
        tg.cancel_scope.cancel()
    Console(file=sys.stdout, width=table_width()).print(summary_table(spec.name, result.states))
    return _backfill_exit(result.with_status("failed"), result.with_status("pending"), signals)


def _backfill_exit(failed: Sequence[Any], pending: Sequence[Any], signals: list[str]) -> int:
    if failed:
        print(
            f"error: {len(failed)} partition(s) failed: "
            f"{', '.join(state.key for state in failed[:20])}"
            f"{' …' if len(failed) > 20 else ''}; fix the cause and run again with "
            "--rerun-failed",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if pending:
        print(
            f"stopped with {len(pending)} partition(s) pending; run the same command again "
            "to continue",
            file=sys.stderr,
        )
    return EXIT_INTERRUPTED if len(signals) > 1 else EXIT_OK


def _stop(backfill: Backfill, received: list[str], name: str) -> None:
    received.append(name)
    if len(received) == 1:
        _log.warning(
            "claiming nothing more; running partitions finish",
            signal=name,
            hint="send it again to hand them back now",
        )
        backfill.stop()
    else:
        _log.warning("handing running partitions back now", signal=name)
        backfill.stop(immediate=True)


async def _status(args: argparse.Namespace) -> int:
    spec = load_backfill_spec(args.spec, resolve=False)
    scope = None
    if args.start or args.end:
        if not (args.start and args.end):
            raise ConfigError("give both --start and --end, or neither", where=args.spec)
        partitions = make_partitions(
            args.start, args.end, args.every or spec.every, size=args.size or spec.size
        )
        scope = Scope.of(partitions)
    store = backfill_store_at(args.store or spec.store)
    await store.open()
    try:
        states = await store.states(spec.name, scope)
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
    if args.json:
        print(orjson.dumps(_status_document(spec.name, states)).decode())
        return EXIT_OK
    limit = len(states) if args.all else 50
    table = summary_table(spec.name, states, limit=limit, succeeded=args.all)
    Console(file=sys.stdout, width=table_width()).print(table)
    return EXIT_OK


def _status_document(name: str, states: Sequence[PartitionState]) -> dict[str, JsonValue]:
    counts = Counter(state.status for state in states)
    return {
        "backfill": name,
        "counts": {
            status: counts[status] for status in ("succeeded", "failed", "running", "pending")
        },
        "partitions": [_partition_document(state) for state in states],
    }


def _partition_document(state: PartitionState) -> dict[str, JsonValue]:
    return {
        "key": state.key,
        "status": state.status,
        "stale_lease": state.stale(),
        "attempts": state.attempts,
        "error": state.error,
        "worker": state.worker,
        "started_at": _iso(state.started_at),
        "finished_at": _iso(state.finished_at),
        "lease_until": _iso(state.lease_until),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
