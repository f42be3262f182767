"""Kill pipeline runs mid-load: the loop the kill -9 recovery tests share.

A kill waits for the run's own ``committed`` log event and then a random
moment more, instead of a fixed time after start-up: a fixed time lands every
kill before the first commit on a loaded machine and after the last one on a
quiet machine, while a commit seen in the log means the run is mid-load on
any machine.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def start_run(spec: Path, *extra: str) -> subprocess.Popen[str]:
    """Run ``spec`` in its directory, logging each commit as JSON on stderr."""
    return subprocess.Popen(
        [
            sys.executable,
            *("-m", "asyncetl", "run", spec.name),
            *("--log-level", "debug", "--log-format", "json"),
            *extra,
        ],
        cwd=spec.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(process: subprocess.Popen[str], event: str) -> bool:
    """Read the run's log until ``event``; false when the run ended first."""
    assert process.stderr is not None
    for line in process.stderr:
        try:
            logged = json.loads(line).get("event")
        except ValueError:  # a traceback or a warning from a library
            continue
        if logged == event:
            return True
    return False


def wait_for_commit(process: subprocess.Popen[str]) -> bool:
    """Read the run's log until it commits a batch; false when it ended first."""
    return wait_for(process, "committed")


def finish(process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Let the run end on its own; it must succeed."""
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err


def kill_mid_run(
    spec: Path,
    rng: random.Random,
    check: Callable[[], T],
    *,
    kills: int = 5,
    settle: float = 0.05,
) -> list[T]:
    """SIGKILL runs of ``spec`` mid-load, then let one run to the end.

    Each run is killed at a random moment up to ``settle`` seconds after its
    first commit; a run that ends before that is the last one.

    :param check: called after each kill: asserts what the killed run left
        behind and returns what the caller wants to know of it.
    :returns: what ``check`` returned after each kill, in order.
    """
    seen: list[T] = []
    while len(seen) < kills:
        process = start_run(spec)
        if not wait_for_commit(process):
            finish(process)
            return seen
        try:
            process.wait(timeout=rng.uniform(0.0, settle))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=30)
            seen.append(check())
        else:
            finish(process)
            return seen
    finish(start_run(spec))
    return seen


def reset_checkpoint(spec: Path) -> None:
    command = [sys.executable, "-m", "asyncetl", "checkpoint", "reset", spec.name, "--yes"]
    reset = subprocess.run(command, cwd=spec.parent, capture_output=True, text=True, timeout=60)
    assert reset.returncode == 0, reset.stderr


def kill_anywhere(spec: Path, rng: random.Random, *, kills: int, longest: float) -> None:
    """SIGKILL ``kills`` runs of ``spec`` at random moments, then let one run to the end.

    A kill comes up to ``longest`` seconds after start-up, before the first commit
    as well as after it. A run that ends before its kill has its checkpoint reset
    and the next run starts over, so the remaining kills land mid-run too (and
    what a reset and a rerun write again is part of what the caller checks).
    """
    done = 0
    while done < kills:
        process = start_run(spec)
        if not wait_for(process, "starting"):
            finish(process)
            raise AssertionError("the run ended before it started")
        try:
            process.wait(timeout=rng.uniform(longest / 6, longest))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=30)
            done += 1
        else:
            finish(process)
            reset_checkpoint(spec)
    finish(start_run(spec))
