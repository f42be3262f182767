"""``python -m asyncetl status SPEC``: where a pipeline stands, without running it.

It reads the committed position from the pipeline's checkpoint store with when it
was saved, and how the last ``run`` ended (recorded there too), counts its dead
letters, asks a running pipeline's status endpoint (``--url``, by default the one
``run --status-port 9108`` serves) for its live figures when it answers, and for a
CDC source adds the slot's lag and whether a consumer holds it (during a snapshot
too). ``--json`` prints the same as one JSON document.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import orjson

from asyncetl import JsonValue, MemoryCheckpointStore, Pipeline
from asyncetl.cli._common import EXIT_OK
from asyncetl.cli._progress import duration, rate
from asyncetl.spec import load_pipeline

__all__ = ["add_command"]

DEFAULT_URL = "http://127.0.0.1:9108"


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``status`` to ``commands`` (argparse subparsers); ``common`` gives ``SPEC``."""
    status = commands.add_parser(
        "status",
        parents=[common],
        help="where a pipeline stands: position, dead letters, live figures, CDC lag",
        description="Show the committed position, the dead-letter count, the live figures "
        "of a running pipeline's status endpoint when it answers, and for a CDC source the "
        "slot's lag and whether a consumer holds it.",
    )
    status.add_argument(
        "--url",
        default=DEFAULT_URL,
        help=f"the running pipeline's status endpoint (default {DEFAULT_URL})",
    )
    status.add_argument("--json", action="store_true", help="print one JSON document")
    status.set_defaults(command=_status)


async def _status(args: argparse.Namespace) -> int:
    from asyncetl.status import read_status  # with its HTTP client, only for this command

    # A CDC source is opened too (see _cdc); the sink and any other source are not.
    pipeline = await load_pipeline(args.spec, using=("checkpoints", "dead_letters"))
    document: dict[str, Any] = {
        "pipeline": pipeline.name,
        "source": pipeline.source.name,
        **await _committed(pipeline),
        "dead_letters": await _dead_letters(pipeline),
        "endpoint": {"url": args.url, "status": await read_status(args.url)},
    }
    document["cdc"] = await _cdc(pipeline, args.spec, document["position"])
    if args.json:
        print(orjson.dumps(document, default=str).decode())
    else:
        print(status_text(document))
    return EXIT_OK


async def _committed(pipeline: Pipeline) -> dict[str, JsonValue]:
    """The committed position, when it was saved and its age, and the last run's outcome."""
    found: dict[str, JsonValue] = {
        "position": None,
        "saved_at": None,
        "age_s": None,
        "last_run": None,
    }
    store = pipeline.checkpoints
    if isinstance(store, MemoryCheckpointStore):
        return found
    await store.open()
    try:
        found["position"] = await store.load(pipeline.name, pipeline.source.name)
        saved_at = await store.saved_at(pipeline.name, pipeline.source.name)
        outcome = await store.load_outcome(pipeline.name)
    finally:
        await store.aclose()
    if saved_at is not None:
        found["saved_at"] = saved_at.isoformat()
        found["age_s"] = round((datetime.now(UTC) - saved_at).total_seconds(), 1)
    found["last_run"] = None if outcome is None else outcome.to_json()
    return found


async def _dead_letters(pipeline: Pipeline) -> int | None:
    store = pipeline.dead_letters
    if store is None:
        return None
    await store.open()
    try:
        return await store.count(pipeline.name)
    finally:
        await store.aclose()


async def _cdc(pipeline: Pipeline, spec: str, position: JsonValue) -> dict[str, JsonValue] | None:
    # Imported here, as in the cdc commands: the PostgreSQL connector costs every other
    # command (each ``run`` included) a third of its start-up.
    from asyncetl.spec.cdc import cdc_source, cdc_status, has_cdc_source

    if not has_cdc_source(pipeline):
        return None
    source = cdc_source(pipeline, spec)
    return await cdc_status(
        source.dsn.url, slot=source.slot, publication=source.publication, position=position
    )


def status_text(document: dict[str, Any]) -> str:
    """The status document for a person: one line per fact, parts and slot indented."""
    position = document["position"]
    letters = document["dead_letters"]
    lines = [
        f"pipeline {document['pipeline']} (source {document['source']})",
        f"  position      {'none' if position is None else _json(position)}",
        f"  saved         {_saved(document)}",
        f"  last run      {_last_run(document['last_run'])}",
        f"  dead_letters  {'no store' if letters is None else letters}",
    ]
    endpoint = document["endpoint"]
    live = endpoint["status"]
    if live is None:
        lines.append(f"  running       not answering at {endpoint['url']}")
    else:
        lines += _live_lines(live, endpoint["url"])
    cdc = document["cdc"]
    if cdc is not None:
        lines += _cdc_lines(cdc)
    return "\n".join(lines)


def _saved(document: dict[str, Any]) -> str:
    if document["saved_at"] is None:
        return "never" if document["position"] is None else "at an unrecorded time"
    return f"{_when(document['saved_at'])} ({duration(document['age_s'])} ago)"


def _last_run(outcome: dict[str, Any] | None) -> str:
    if outcome is None:
        return "none recorded"
    line = f"{outcome['state']} at {_when(outcome['time'])}"
    return line if outcome["error"] is None else f"{line}: {outcome['error']}"


def _when(iso: str) -> str:
    """An ISO time as ``2026-12-03 07:59:01 UTC``."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _live_lines(live: dict[str, Any], url: str) -> list[str]:
    since = live["seconds_since_commit"]
    commit = "none yet" if since < 0 else f"{duration(since)} ago"
    lines = [
        f"  running       {live['state']} at {url}: {live['ready']}",
        f"  records/s     {rate(live['records_per_s'])} (last 10 s)",
        f"  records       in {live['records_in']:,}, out {live['records_out']:,}, "
        f"dead_lettered {live['dead_lettered']:,} (this run)",
        f"  last commit   {commit}",
    ]
    for part in live["progress"]:
        total = "?" if part["total"] is None else f"{part['total']:,}"
        eta = "" if part["eta_s"] is None else f", ETA {duration(part['eta_s'])}"
        name = part["part"] or "all"
        lines.append(f"  progress      {name}: {part['done']:,} of {total} {part['unit']}{eta}")
    return lines


def _cdc_lines(cdc: dict[str, JsonValue]) -> list[str]:
    if not cdc.get("exists"):
        return [f"  cdc slot      {cdc['slot']} does not exist (the next run creates it)"]
    attached = "yes" if cdc.get("consumer_attached") else "no"
    return [
        f"  cdc slot      {cdc['slot']}: lag {cdc.get('lag_bytes')} bytes, "
        f"consumer attached: {attached}"
    ]


def _json(value: JsonValue) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()
