"""``run`` shows progress: a live table in a terminal, log lines elsewhere, nothing with --no-progress."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from asyncetl import Observation, PartProgress, StageView
from asyncetl.cli._progress import progress_table
from tests.cli.helpers import cli

FACTORY = """
from asyncetl import ListSink, ListSource, Pipeline


def slow_copy():
    source = ListSource(range(60), chunk_size=10, delay=0.15, name="numbers")
    return Pipeline("slow", source, ListSink(), max_batch_size=10, summary_interval=0.3)
"""


def project(tmp_path: Path) -> Path:
    (tmp_path / "factory.py").write_text(FACTORY)
    return tmp_path


def test_off_a_terminal_progress_lines_carry_total_percent_rate_and_eta(tmp_path: Path) -> None:
    result = cli(project(tmp_path), "run", "factory:slow_copy", "--log-format", "json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    parts = [e for e in events if e["event"] == "progress" and "total" in e]
    assert parts, result.stderr
    assert {(e["total"], e["unit"]) for e in parts} == {(60, "records")}
    assert all(e["percent"] == round(100 * e["done"] / 60, 1) for e in parts)
    assert {"per_s", "eta_s"} <= parts[-1].keys()


def test_no_progress_silences_the_progress_lines(tmp_path: Path) -> None:
    result = cli(
        project(tmp_path), "run", "factory:slow_copy", "--no-progress", "--log-format", "json"
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert "progress" not in events
    assert events[-1] == "finished"


def test_in_a_terminal_a_live_table_shows_the_progress_and_no_lines(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncetl", "run", "factory:slow_copy"],
        cwd=project(tmp_path),
        stdin=follower,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        shown += data
    process.wait(timeout=30)
    os.close(leader)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode())
    assert process.returncode == 0
    assert "slow " in screen and " records/s · records_in " in screen
    rows = [line.split() for line in screen.splitlines() if line.startswith("all ")]
    assert rows[-1][2:5] == ["60", "60", "100.0"]
    assert rows[-1][-1] == "done"
    assert " progress " not in screen  # the table stands in for the log lines


def test_the_table_lists_busy_parts_first_and_sums_up_the_rest() -> None:
    stages = [
        StageView("tables", "source", 900, 900, 9, 0, (), 0.0),
        StageView("copy", "sink", 900, 890, 9, 10, (), 0.0),
    ]
    parts = [PartProgress(f"public.done{i}", "rows", 50, 50, 0.0, 0.0) for i in range(12)]
    parts.insert(5, PartProgress("public.big", "rows", 250, 1000, 125.0, 6.0))
    parts.append(PartProgress("public.next", "rows", 0, 400, 0.0, None))
    seen = Observation("copy", "running", 3.0, 125.0, stages, [], parts, [], [], 0.4)
    console = Console(record=True, width=100)
    console.print(progress_table(seen))
    lines = console.export_text().splitlines()
    assert lines[0] == (
        "copy 125 records/s · records_in 900 · records_out 890 · dead_lettered 10 · "
        "last commit 0.4 s ago"
    )
    assert lines[2].split() == ["public.big", "━━━━━━", "250", "1,000", "25.0", "125", "6.0", "s"]
    assert lines[3].split()[0] == "public.next"
    assert lines[3].split()[-3:] == ["0.0", "0.0", "–"]
    assert lines[-1].split() == ["…", "2", "more", "(2", "done)"]


def test_rates_show_as_unknown_in_the_first_second_and_as_figures_after() -> None:
    stages = [
        StageView("numbers", "source", 0, 0, 0, 0, (), 0.0),
        StageView("copy", "sink", 0, 0, 0, 0, (), 0.0),
    ]
    part = PartProgress("public.t", "rows", 0, 400, 0.0, None)

    def shown(elapsed_s: float) -> list[str]:
        seen = Observation("copy", "running", elapsed_s, 0.0, stages, [], [part], [], [], None)
        console = Console(record=True, width=100)
        console.print(progress_table(seen))
        return console.export_text().splitlines()

    early = shown(0.4)
    assert early[0] == (
        "copy – records/s · records_in 0 · records_out 0 · dead_lettered 0 · last commit none yet"
    )
    assert early[2].split()[-3:] == ["0.0", "–", "–"]
    later = shown(1.0)
    assert later[0].startswith("copy 0.0 records/s · ")
    assert later[2].split()[-3:] == ["0.0", "0.0", "–"]
