"""``run``'s live progress display: done of total, recent rate and ETA, per part.

In a terminal, :func:`show_progress` redraws a ``rich`` table once a second
from :meth:`Pipeline.observe`; elsewhere the engine's own progress log lines
carry the same figures. :func:`progress_table` is the drawing alone.
"""

from __future__ import annotations

from typing import IO

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from asyncetl import Observation, PartProgress, Pipeline

__all__ = ["progress_table", "show_progress"]

#: Parts listed one per row; the rest are summed up in one line.
MAX_ROWS = 12
#: Seconds of run before rates are shown: over less, a rate is noise, or 0.0
#: before the first batch, which would read as a stalled pipeline.
RATE_AFTER_S = 1.0
#: What stands for a figure that cannot be known yet.
UNKNOWN = "–"


async def show_progress(pipeline: Pipeline, stream: IO[str], *, interval: float = 1.0) -> None:
    """Redraw the progress of ``pipeline`` on ``stream`` every ``interval`` s until cancelled."""
    console = Console(file=stream)
    # No refresh thread: every redraw happens here, on the event loop's own schedule.
    with Live(progress_table(pipeline.observe()), console=console, auto_refresh=False) as live:
        try:
            while True:
                await anyio.sleep(interval)
                live.update(progress_table(pipeline.observe()), refresh=True)
        finally:
            live.update(progress_table(pipeline.observe()), refresh=True)


def progress_table(seen: Observation) -> RenderableType:
    """One header line of the run's figures, then a row per part (the busiest first)."""
    since = seen.seconds_since_commit
    commit = "none yet" if since is None else f"{duration(since)} ago"
    stats = {stage.kind: stage for stage in seen.stages}
    measured = seen.elapsed_s >= RATE_AFTER_S
    header = Text.assemble(
        (f"{seen.pipeline} ", "bold"),
        f"{rate(seen.records_per_s) if measured else UNKNOWN} records/s · ",
        f"records_in {stats['source'].records_in:,} · ",
        f"records_out {stats['sink'].records_out:,} · ",
        f"dead_lettered {sum(s.dead_lettered for s in seen.stages):,} · ",
        f"last commit {commit}",
    )
    if not seen.progress:
        return header
    table = Table(box=None, pad_edge=False, show_edge=False)
    for name, justify in (("part", "left"), ("", "left"), ("done", "right"), ("total", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name in ("%", "rate/s", "ETA"):
        table.add_column(name, justify="right")
    parts = sorted(seen.progress, key=_order)
    for part in parts[:MAX_ROWS]:
        table.add_row(*_row(part, measured=measured))
    rest = parts[MAX_ROWS:]
    if rest:
        finished = sum(1 for part in rest if part.fraction == 1.0)
        table.add_row(f"… {len(rest)} more ({finished} done)", "", "", "", "", "", "")
    return Group(header, table)


def _order(part: PartProgress) -> int:
    """Parts being read first, then those still to read, then the finished."""
    if part.fraction == 1.0:
        return 2
    return 0 if part.per_s > 0 else 1


def _row(part: PartProgress, *, measured: bool) -> list[RenderableType]:
    fraction = part.fraction
    bar = ProgressBar(total=1.0, completed=fraction or 0.0, width=24)
    if not measured:
        per_s = UNKNOWN
    elif part.unit == "bytes":
        per_s = amount(round(part.per_s), part.unit)
    else:
        per_s = rate(part.per_s)
    return [
        part.part or "all",
        bar,
        amount(part.done, part.unit),
        "?" if part.total is None else amount(part.total, part.unit),
        UNKNOWN if fraction is None else f"{100 * fraction:.1f}",
        per_s,
        "done" if fraction == 1.0 else UNKNOWN if part.eta_s is None else duration(part.eta_s),
    ]


def amount(value: int, unit: str) -> str:
    """``value`` units for a person: bytes in KiB/MiB/GiB, anything else with separators."""
    if unit != "bytes":
        return f"{value:,}"
    size = float(value)
    for name in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or name == "GiB":
            return f"{size:.0f} {name}" if name == "B" else f"{size:.1f} {name}"
        size /= 1024
    raise AssertionError("unreachable")


def rate(per_s: float) -> str:
    return f"{per_s:,.0f}" if per_s >= 100 else f"{per_s:,.1f}"


def duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 12 s``, ``2 h 5 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
