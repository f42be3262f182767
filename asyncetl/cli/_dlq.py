"""``python -m asyncetl dlq list|replay SPEC``: inspect and replay a pipeline's dead letters.

Both read the pipeline from its spec, so they use the very dead-letter store that
``run`` writes to, through the public :class:`~asyncetl.DeadLetterStore` API and
:func:`~asyncetl.replay_dead_letters`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio
import orjson

from asyncetl import ConfigError, DeadLetter, JsonValue, ReplayResult, replay_dead_letters
from asyncetl.cli._common import EXIT_OK, positive_int
from asyncetl.spec import load_pipeline

__all__ = ["add_commands"]


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``dlq list`` and ``dlq replay`` to ``commands`` (argparse subparsers).

    :param common: the parent parser giving the ``SPEC`` argument and logging options.
    """
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
    listing.set_defaults(command=_list)
    replay = dlq_commands.add_parser(
        "replay",
        parents=[common],
        help="send dead letters through the pipeline again",
        description="Send each dead letter through the pipeline's transforms and sink again "
        "from the stage where it failed; remove those that succeed and keep the "
        "others.",
    )
    replay.set_defaults(command=_replay)


async def _list(args: argparse.Namespace) -> int:
    pipeline = await load_pipeline(args.spec)
    store = pipeline.dead_letters
    if store is None:
        raise ConfigError("the spec has no [dead_letters] store", where=str(args.spec))
    await store.open()
    try:
        letters = await store.list(pipeline.name, limit=args.limit)
    finally:
        with anyio.move_on_after(10, shield=True):
            await store.aclose()
    if args.json:
        for letter in letters:
            print(orjson.dumps(_letter_dict(letter)).decode())
    else:
        print(_letter_table(pipeline.name, letters, args.limit))
    return EXIT_OK


async def _replay(args: argparse.Namespace) -> int:
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
