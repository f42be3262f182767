"""``python -m asyncetl checkpoint show|reset SPEC``: read or move a pipeline's committed position.

Both read the pipeline from its spec, so they use the very store and key that
``run`` uses, through the public :class:`~asyncetl.CheckpointStore` API. A reset
writes a new position (``null``: from the start) as a normal checkpoint, once
the source's :meth:`~asyncetl.Source.check_position` accepts it (a position for
another file or table, or of the wrong shape, is refused and nothing written);
the pipeline must not be running meanwhile, or its next commit overwrites it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from asyncetl import Checkpoint, ConfigError, JsonValue, MemoryCheckpointStore, Pipeline
from asyncetl.cli._common import EXIT_CONFIG, EXIT_OK, confirm, spec_options
from asyncetl.spec import load_pipeline

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Add ``checkpoint show`` and ``checkpoint reset`` to ``commands`` (argparse subparsers)."""
    common = argparse.ArgumentParser(add_help=False, parents=[spec_options()])
    common.add_argument("spec", metavar="SPEC", help="the pipeline's spec")
    checkpoint = commands.add_parser(
        "checkpoint",
        help="show or reset the committed position",
        description="Show or reset the position a pipeline resumes after.",
    )
    checkpoint_commands = checkpoint.add_subparsers(
        title="commands", required=True, metavar="COMMAND"
    )
    show = checkpoint_commands.add_parser(
        "show",
        parents=[common],
        help="print the committed position",
        description="Print the position the next run resumes after (null: from the start).",
    )
    show.add_argument("--json", action="store_true", help="print one JSON document")
    show.set_defaults(command=_show)
    reset = checkpoint_commands.add_parser(
        "reset",
        parents=[common],
        help="start over, or resume after a given position",
        description="Commit a new position: the start (the default), or --to a JSON position "
        "as the source writes them (see 'checkpoint show') and the source accepts. Stop the "
        "pipeline first. Asks for confirmation unless --yes.",
    )
    reset.add_argument("--to", metavar="JSON", help="the position to resume after")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(command=_reset)


async def _show(args: argparse.Namespace) -> int:
    pipeline = await _persistent(args.spec)
    position = await _load(pipeline)
    if args.json:
        document = {"pipeline": pipeline.name, "source": pipeline.source.name, "position": position}
        print(_json(document))
    else:
        print(f"{_named(pipeline)}: {_json(position)}")
    return EXIT_OK


async def _reset(args: argparse.Namespace) -> int:
    position = _position(args.to)
    pipeline = await _persistent(args.spec)
    # The question the source asks at start-up: a position it would refuse is never written.
    pipeline.source.check_position(position)
    before = await _load(pipeline)
    question = (
        f"Move {_named(pipeline)} from {_json(before)} to {_json(position)}? "
        "Records after it are read again. [y/N] "
    )
    if not args.yes and not await confirm(question, command="checkpoint reset"):
        print("nothing changed", file=sys.stderr)
        return EXIT_CONFIG
    checkpoint = Checkpoint(pipeline.name, pipeline.source.name, position)
    await pipeline.checkpoints.open()
    try:
        await pipeline.checkpoints.save(checkpoint)
    finally:
        await pipeline.checkpoints.aclose()
    print(f"{_named(pipeline)}: {_json(before)} -> {_json(position)}")
    return EXIT_OK


async def _persistent(spec: str) -> Pipeline:
    pipeline = await load_pipeline(spec)
    if isinstance(pipeline.checkpoints, MemoryCheckpointStore):
        raise ConfigError(
            "the spec keeps checkpoints in memory, so every run starts from the beginning "
            "and there is no position to show or reset; add a [checkpoints] table",
            where=spec,
        )
    return pipeline


async def _load(pipeline: Pipeline) -> JsonValue:
    await pipeline.checkpoints.open()
    try:
        return await pipeline.checkpoints.load(pipeline.name, pipeline.source.name)
    finally:
        await pipeline.checkpoints.aclose()


def _position(text: str | None) -> JsonValue:
    if text is None:
        return None
    try:
        position: JsonValue = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--to must be a JSON position, not {text!r} ({exc})") from None
    return position


def _named(pipeline: Pipeline) -> str:
    return f"pipeline {pipeline.name} (source {pipeline.source.name})"


def _json(position: JsonValue) -> str:
    return orjson.dumps(position).decode()
