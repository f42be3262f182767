"""What the ``dlq`` commands print: letters as a table or JSON, and replay reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson

from asyncetl import DeadLetter, JsonValue, ReplayResult

__all__ = ["described_filters", "letter_dict", "letter_table", "letters", "replay_report"]


def letters(number: int) -> str:
    """``1 dead letter``, ``2 dead letters``."""
    return f"{number} dead letter{'' if number == 1 else 's'}"


def letter_dict(letter: DeadLetter) -> dict[str, JsonValue]:
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


def letter_table(name: str, shown: Sequence[DeadLetter], total: int, filters: str) -> str:
    """``shown`` as a table, then how many are shown of the ``total`` that match ``filters``."""
    if not shown:
        return f"no dead letters for pipeline {name}{filters}"
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
        for letter in shown
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    if total > len(shown):
        lines.append(f"{len(shown)} of {letters(total)} shown; see --limit")
    else:
        lines.append(f"{letters(len(shown))} shown")
    return "\n".join(lines)


def replay_report(result: ReplayResult, *, dry_run: bool) -> str:
    """The outcome, then one line per letter still failing (and, in a dry run, per passing one)."""
    if dry_run:
        lines = [
            f"dry run, nothing written or removed: of {letters(result.attempted)}, "
            f"{len(result.would_reach_sink)} pass the transforms and would go to the sink "
            f"(not tried), {len(result.failed)} still failing"
        ]
    else:
        lines = [
            f"replayed {letters(result.attempted)}: {len(result.removed)} loaded and removed, "
            f"{len(result.failed)} still failing and kept"
        ]
    # Ids and stages padded to one width, so that ids 7 and 10 start their errors together.
    passing = result.would_reach_sink if dry_run else []
    ids = [str(letter.id) for letter in passing] + [str(f.letter.id) for f in result.failed]
    id_width = max(map(len, ids), default=0)
    stage_width = max((len(failure.stage) for failure in result.failed), default=0)
    lines += [f"  {letter.id:<{id_width}}  would go to the sink" for letter in passing]
    lines += [
        f"  {failure.letter.id:<{id_width}}  {failure.stage:<{stage_width}}  "
        f"{' '.join(failure.error.split())}"
        for failure in result.failed
    ]
    return "\n".join(lines)


def described_filters(
    stage: str | None, *, since: datetime | None = None, before: datetime | None = None
) -> str:
    """`` (stage x, stored before T)``, or nothing without filters."""
    parts = [f"stage {stage}"] if stage is not None else []
    if since is not None:
        parts.append(f"stored since {since.isoformat()}")
    if before is not None:
        parts.append(f"stored before {before.isoformat()}")
    return f" ({', '.join(parts)})" if parts else ""


def _record(record: JsonValue) -> str:
    """A record as text: a string (a raw line, say) as it is, anything else as JSON."""
    return record if isinstance(record, str) else orjson.dumps(record).decode()


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
