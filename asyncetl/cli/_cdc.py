"""``python -m asyncetl cdc status|drop SPEC``: look after a CDC pipeline's slot.

Both read the pipeline from its spec, so they talk about the very slot and
publication that ``run`` uses; ``status`` also reads the committed position
from the pipeline's checkpoint store to show snapshot progress, and ``drop``
resets that position too: a checkpoint past a dropped slot could never resume,
so dropping both is what makes the next run re-snapshot.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from asyncetl import Checkpoint, JsonValue, Pipeline
from asyncetl.cli._common import EXIT_CONFIG, EXIT_OK, confirm, spec_options
from asyncetl.spec import load_pipeline

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Add ``cdc status`` and ``cdc drop`` to ``commands`` (an argparse subparsers object)."""
    common = argparse.ArgumentParser(add_help=False, parents=[spec_options()])
    common.add_argument("spec", metavar="SPEC", help="the spec of a pipeline whose source is CDC")
    cdc = commands.add_parser(
        "cdc",
        help="inspect or drop a CDC slot",
        description="Inspect or drop the replication slot and publication of a CDC pipeline.",
    )
    cdc_commands = cdc.add_subparsers(title="commands", required=True, metavar="COMMAND")
    status = cdc_commands.add_parser(
        "status",
        parents=[common],
        help="slot, confirmed LSN, lag, retained WAL, snapshot progress",
        description="Show the slot's confirmed LSN, lag in bytes and seconds, the WAL it "
        "retains, its health, and the snapshot progress of the committed position.",
    )
    status.add_argument("--json", action="store_true", help="print one JSON document")
    status.set_defaults(command=_status)
    drop = cdc_commands.add_parser(
        "drop",
        parents=[common],
        help="drop the slot and the publication, and reset the checkpoint",
        description="Drop the pipeline's replication slot (and its publication) and reset "
        "its committed position to the start, so the next run creates them again and "
        "starts with a new snapshot. Stop the pipeline first. Asks for confirmation "
        "unless --yes.",
    )
    drop.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    drop.add_argument("--keep-publication", action="store_true", help="drop only the slot")
    drop.set_defaults(command=_drop)


async def _status(args: argparse.Namespace) -> int:
    # Imported here: every other command would otherwise load the PostgreSQL connector.
    from asyncetl.spec.cdc import cdc_source, cdc_status

    pipeline = await load_pipeline(args.spec, using=("source", "checkpoints"))
    source = cdc_source(pipeline, args.spec)
    await pipeline.checkpoints.open()
    try:
        position = await pipeline.checkpoints.load(pipeline.name, source.name)
    finally:
        await pipeline.checkpoints.aclose()
    status = await cdc_status(
        source.dsn.url, slot=source.slot, publication=source.publication, position=position
    )
    if args.json:
        print(orjson.dumps(status).decode())
    else:
        print(_status_text(status))
    return EXIT_OK


def _status_text(status: dict[str, JsonValue]) -> str:
    """The status for a person: a few sentences before the first run, else one line a figure."""
    if not status["exists"]:
        return "\n".join(_unmade_lines(status))
    width = max(len(key) for key in status)
    lines = []
    for key, value in status.items():
        if key == "publication":
            shown = _publication(value)
        else:
            shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)


def _unmade_lines(status: dict[str, JsonValue]) -> list[str]:
    """What a missing slot means: nothing streamed yet (or it was dropped), and what comes next."""
    lines = [f"slot {status['slot']} does not exist yet; the next run creates it"]
    publication = status["publication"]
    assert isinstance(publication, dict)
    if publication["exists"]:
        lines.append(f"publication {_publication(publication)}")
    else:
        lines.append(
            f"publication {publication['name']} does not exist yet; the next run creates it"
        )
    position = status["checkpoint"]
    if position is None:
        lines.append("no position committed; the next run starts with a snapshot")
    else:
        lines.append(f"committed position {orjson.dumps(position).decode()}")
    return lines


def _publication(publication: JsonValue) -> str:
    """``name: table, table`` (or that it does not exist)."""
    assert isinstance(publication, dict)
    tables = publication["tables"]
    if not publication["exists"] or not isinstance(tables, list):
        return f"{publication['name']} (does not exist)"
    return f"{publication['name']}: {', '.join(map(str, tables)) or 'no tables'}"


async def _drop(args: argparse.Namespace) -> int:
    from asyncetl.spec.cdc import cdc_drop, cdc_source

    pipeline = await load_pipeline(args.spec, using=("source", "checkpoints"))
    source = cdc_source(pipeline, args.spec)
    what = f"slot {source.slot!r}"
    if not args.keep_publication:
        what += f" and publication {source.publication!r}"
    question = (
        f"Drop {what}, and reset the checkpoint of pipeline {pipeline.name}? "
        "The next run re-snapshots. [y/N] "
    )
    if not args.yes and not await confirm(question, command="cdc drop"):
        print("nothing dropped", file=sys.stderr)
        return EXIT_CONFIG
    dropped = await cdc_drop(
        source.dsn.url,
        slot=source.slot,
        publication=source.publication,
        drop_publication=not args.keep_publication,
    )
    for name, done in dropped.items():
        print(f"{name}: {'dropped' if done else 'did not exist'}")
    before = await _reset_checkpoint(pipeline, source.name)
    print(f"checkpoint: {'reset' if before is not None else 'was not set'}")
    return EXIT_OK


async def _reset_checkpoint(pipeline: Pipeline, source: str) -> JsonValue:
    """Set the pipeline's committed position back to the start; return what it was."""
    await pipeline.checkpoints.open()
    try:
        before = await pipeline.checkpoints.load(pipeline.name, source)
        if before is not None:
            await pipeline.checkpoints.save(Checkpoint(pipeline.name, source, None))
        return before
    finally:
        await pipeline.checkpoints.aclose()
