"""``python -m asyncetl dlq list|replay|delete|purge SPEC``: a pipeline's dead letters.

Every command reads the pipeline from its spec, so it uses the very dead-letter
store that ``run`` writes to, through the public :class:`~asyncetl.DeadLetterStore`
API (``find``, ``count``, ``purge``) and :func:`~asyncetl.replay_dead_letters`.
The filters mean the same everywhere: ``--stage`` the stage that set the letter
aside, ``--since`` / ``--before`` its time, ``--id`` the ids that ``dlq list`` shows.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import orjson

from asyncetl import ConfigError, DeadLetterStore, Pipeline, replay_dead_letters
from asyncetl.cli._common import EXIT_CONFIG, EXIT_OK, confirm, positive_int
from asyncetl.cli._dlq_text import (
    described_filters,
    letter_dict,
    letter_table,
    letters,
    replay_report,
)
from asyncetl.spec import load_pipeline

__all__ = ["add_commands", "point_in_time"]

_AGE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def point_in_time(text: str) -> datetime:
    """An argument type: an ISO 8601 date or time (naive means UTC), or an age like ``2d``.

    An age (``30s``, ``15m``, ``12h``, ``2d``, ``1w``) means that long before now.

    :raises argparse.ArgumentTypeError: for anything else.
    """
    age = _AGE.fullmatch(text.strip())
    if age:
        count, unit = age.groups()
        return datetime.now(UTC) - timedelta(**{_UNITS[unit]: int(count)})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected an ISO date or time (2026-05-01, 2026-05-01T12:00Z) or an age "
            f"(30m, 12h, 2d, 1w), got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``dlq list``, ``replay``, ``delete`` and ``purge`` to ``commands`` (argparse subparsers).

    :param common: the parent parser giving the ``SPEC`` argument and logging options.
    """
    dlq = commands.add_parser(
        "dlq",
        help="inspect, replay and delete dead letters",
        description="Inspect, replay and delete dead letters.",
    )
    dlq_commands = dlq.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _add_list(dlq_commands, common)
    _add_replay(dlq_commands, common)
    _add_delete(dlq_commands, common)
    _add_purge(dlq_commands, common)


def _add_list(commands: Any, common: argparse.ArgumentParser) -> None:
    listing = commands.add_parser(
        "list",
        parents=[common],
        help="show dead letters",
        description="Show the pipeline's dead letters, oldest first.",
    )
    _stage_option(listing, "show only")
    listing.add_argument(
        "--since",
        type=point_in_time,
        metavar="TIME",
        help="show only letters stored at or after TIME: an ISO date or time (UTC unless it "
        "says otherwise) or an age such as 30m, 12h, 2d",
    )
    listing.add_argument(
        "--limit",
        type=positive_int,
        default=100,
        metavar="N",
        help="show at most N letters (default 100)",
    )
    listing.add_argument("--json", action="store_true", help="print one JSON document: a list")
    listing.set_defaults(command=_list)


def _add_replay(commands: Any, common: argparse.ArgumentParser) -> None:
    replay = commands.add_parser(
        "replay",
        parents=[common],
        help="send dead letters through the pipeline again",
        description="Send each dead letter through the pipeline's transforms and sink again "
        "from the stage where it failed; remove those that succeed and keep the others.",
    )
    _id_option(replay, "replay only", required=False)
    _stage_option(replay, "replay only")
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="only send the letters through the transforms and tell which would now reach "
        "the sink; nothing is written or removed, and the sink is not tried",
    )
    replay.set_defaults(command=_replay)


def _add_delete(commands: Any, common: argparse.ArgumentParser) -> None:
    delete = commands.add_parser(
        "delete",
        parents=[common],
        help="delete dead letters by id",
        description="Delete the dead letters with the given ids (see 'dlq list'). Asks for "
        "confirmation unless --yes.",
    )
    _id_option(delete, "delete", required=True)
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(command=_delete)


def _add_purge(commands: Any, common: argparse.ArgumentParser) -> None:
    purge = commands.add_parser(
        "purge",
        parents=[common],
        help="delete every dead letter, or those of a stage or older than a time",
        description="Delete the pipeline's dead letters: all of them, or only those matching "
        "--stage and --before. Asks for confirmation unless --yes.",
    )
    _stage_option(purge, "delete only")
    purge.add_argument(
        "--before",
        type=point_in_time,
        metavar="TIME",
        help="delete only letters stored before TIME: an ISO date or time (UTC unless it says "
        "otherwise) or an age such as 30d",
    )
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(command=_purge)


def _stage_option(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "--stage", metavar="NAME", help=f"{verb} letters set aside by the stage NAME"
    )


def _id_option(parser: argparse.ArgumentParser, verb: str, *, required: bool) -> None:
    parser.add_argument(
        "--id",
        dest="ids",
        action="append",
        required=required,
        metavar="ID",
        help=f"{verb} the letter with this id (as 'dlq list' shows it); may be repeated",
    )


async def _list(args: argparse.Namespace) -> int:
    async with _opened_store(args.spec) as (pipeline, store):
        found = await store.find(
            pipeline.name, stage=args.stage, since=args.since, limit=args.limit
        )
        total = len(found)
        if total == args.limit and not args.json:
            total = await store.count(pipeline.name, stage=args.stage, since=args.since)
    if args.json:
        print(orjson.dumps([letter_dict(letter) for letter in found]).decode())
    else:
        filters = described_filters(args.stage, since=args.since)
        print(letter_table(pipeline.name, found, total, filters))
    return EXIT_OK


async def _replay(args: argparse.Namespace) -> int:
    pipeline = await load_pipeline(args.spec)
    result = await replay_dead_letters(
        pipeline, ids=args.ids, stage=args.stage, dry_run=args.dry_run
    )
    print(replay_report(result, dry_run=args.dry_run))
    return EXIT_OK


async def _delete(args: argparse.Namespace) -> int:
    async with _opened_store(args.spec) as (pipeline, store):
        matching = await store.count(pipeline.name, ids=args.ids)
        question = (
            f"Delete {letters(matching)} of pipeline {pipeline.name} "
            f"(ids {', '.join(args.ids)})? They cannot be replayed afterwards. [y/N] "
        )
        if not args.yes and not await confirm(question, command="dlq delete"):
            print("nothing changed", file=sys.stderr)
            return EXIT_CONFIG
        removed = await store.purge(pipeline.name, ids=args.ids)
    print(f"removed {letters(removed)}")
    return EXIT_OK


async def _purge(args: argparse.Namespace) -> int:
    async with _opened_store(args.spec) as (pipeline, store):
        matching = await store.count(pipeline.name, stage=args.stage, before=args.before)
        question = (
            f"Delete {letters(matching)} of pipeline {pipeline.name}"
            f"{described_filters(args.stage, before=args.before)}? "
            "They cannot be replayed afterwards. [y/N] "
        )
        if not args.yes and not await confirm(question, command="dlq purge"):
            print("nothing changed", file=sys.stderr)
            return EXIT_CONFIG
        removed = await store.purge(pipeline.name, stage=args.stage, before=args.before)
    print(f"removed {letters(removed)}")
    return EXIT_OK


@asynccontextmanager
async def _opened_store(spec: str) -> AsyncIterator[tuple[Pipeline, DeadLetterStore]]:
    """The pipeline of ``spec`` and its dead-letter store, open; closed again, shielded."""
    pipeline = await load_pipeline(spec, using=("dead_letters",))
    store = pipeline.dead_letters
    if store is None:
        raise ConfigError("the spec has no [dead_letters] store", where=str(spec))
    await store.open()
    try:
        yield pipeline, store
    finally:
        with anyio.move_on_after(10, shield=True):
            await store.aclose()
