"""Backfill progress: counts, rate and ETA, shown live in a terminal or as log lines.

The runner only talks to a :class:`ProgressReporter`; :func:`open_progress`
picks :class:`LiveProgress` (a ``rich`` live line) for a terminal and
:class:`LogProgress` (structlog lines) otherwise. :func:`summary_table` renders
the end-of-run table either way.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from asyncetl.backfill.store import PartitionState
from asyncetl.core.logs import get_logger

__all__ = [
    "BackfillStats",
    "LiveProgress",
    "LogProgress",
    "NoProgress",
    "ProgressReporter",
    "open_progress",
    "summary_table",
]


@dataclass(slots=True)
class BackfillStats:
    """Where a backfill stands: counts over the whole run's partitions, every worker's included.

    :param finished_here: partitions this worker finished (succeeded or failed) in this run.
    """

    name: str
    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    finished_here: int = 0
    started: float = field(default_factory=time.monotonic)

    def set_states(self, states: Sequence[PartitionState]) -> None:
        """Take the counts from the store's rows."""
        self.total = len(states)
        self.counts = Counter(state.status for state in states)

    def moved(self, before: str, after: str) -> None:
        """One partition went from status ``before`` to ``after``."""
        self.counts[before] -= 1
        self.counts[after] += 1

    @property
    def rate(self) -> float:
        """Partitions finished per second by this worker in this run."""
        return self.finished_here / max(time.monotonic() - self.started, 1e-9)

    @property
    def eta(self) -> float | None:
        """Seconds until every partition finished, at the current rate; ``None`` if unknown."""
        left = self.counts["pending"] + self.counts["running"]
        return left / self.rate if self.finished_here else None

    def line(self) -> str:
        """``12/90 done · 1 failed · 8 running · 0.9/s · ETA 1m27s``."""
        c = self.counts
        eta = self.eta
        return (
            f"{self.name}: {c['succeeded']}/{self.total} done · {c['failed']} failed · "
            f"{c['running']} running · {c['pending']} pending · {self.rate:.2f}/s · "
            f"ETA {'?' if eta is None else _duration(eta)}"
        )


class ProgressReporter(Protocol):
    """What a backfill tells about its progress."""

    def update(self, stats: BackfillStats) -> None:
        """Counts changed, or time passed (called about twice a second)."""

    def finished(self, key: str, outcome: str, seconds: float, error: str | None) -> None:
        """This worker finished partition ``key`` with ``outcome`` after ``seconds``."""

    def close(self) -> None:
        """The run is over; stop any live display."""


class NoProgress:
    """Reports nothing."""

    def update(self, stats: BackfillStats) -> None:
        pass

    def finished(self, key: str, outcome: str, seconds: float, error: str | None) -> None:
        pass

    def close(self) -> None:
        pass


class LogProgress:
    """A log line per finished partition and a progress line every ``interval`` seconds."""

    def __init__(self, *, interval: float = 10.0) -> None:
        self.interval = interval
        self._log = get_logger("asyncetl.backfill")
        self._last = time.monotonic()

    def update(self, stats: BackfillStats) -> None:
        if time.monotonic() - self._last >= self.interval:
            self._last = time.monotonic()
            self._log.info("progress", status=stats.line())

    def finished(self, key: str, outcome: str, seconds: float, error: str | None) -> None:
        fields = {"partition": key, "outcome": outcome, "seconds": round(seconds, 3)}
        if outcome == "failed":
            self._log.warning("partition finished", error=error, **fields)
        else:
            self._log.info("partition finished", **fields)

    def close(self) -> None:
        pass


class LiveProgress:
    """One live status line in a terminal; failures are printed above it as they happen."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live = Live(Text(""), console=console, refresh_per_second=4, transient=True)
        self._live.start()

    def update(self, stats: BackfillStats) -> None:
        self._live.update(Text(stats.line()))

    def finished(self, key: str, outcome: str, seconds: float, error: str | None) -> None:
        if outcome == "failed":
            self.console.print(
                f"[red]partition {key} failed[/red] after {seconds:.1f}s: {error}",
                markup=True,
                highlight=False,
            )

    def close(self) -> None:
        self._live.stop()


def open_progress(stream: IO[str], *, interval: float = 10.0) -> ProgressReporter:
    """Live progress when ``stream`` is a terminal, log lines otherwise."""
    console = Console(file=stream)
    if console.is_terminal:
        return LiveProgress(console)
    return LogProgress(interval=interval)


def summary_table(
    name: str, states: Sequence[PartitionState], *, limit: int = 50, succeeded: bool = False
) -> Table:
    """Counts by status, then every partition that did not succeed (up to ``limit``).

    :param succeeded: list succeeded partitions too.
    """
    counts: Counter[str] = Counter(state.status for state in states)
    # The counts head the table in words: as rows they stood under the partition and
    # status columns, where "(succeeded) 20" read as a partition whose status is 20.
    statuses = ("succeeded", "failed", "running", "pending")
    tally = ", ".join(f"{counts[s]} {s}" for s in statuses if counts[s])
    unfinished = [state for state in states if succeeded or state.status != "succeeded"]
    plural = "" if len(states) == 1 else "s"
    title = f"backfill {name}: {len(states)} partition{plural}" + (f", {tally}" if tally else "")
    table = Table(
        title=title,
        title_justify="left",
        show_header=bool(unfinished),
        box=box.HEAVY_HEAD if unfinished else None,  # nothing to list: the title alone
        min_width=len(title),  # a title wrapped over two lines reads as two
    )
    for column in ("partition", "status", "attempts", "error"):
        table.add_column(column)
    for state in unfinished[:limit]:
        table.add_row(state.key, _status(state), str(state.attempts), state.error or "")
    if len(unfinished) > limit:
        table.add_row(f"… {len(unfinished) - limit} more", "", "", "")
    return table


def _status(state: PartitionState) -> str:
    return "running (stale lease)" if state.stale() else state.status


def _duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
