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


def wait_for_commit(process: subprocess.Popen[str]) -> bool:
    """Read the run's log until it commits a batch; false when it ended first."""
    assert process.stderr is not None
    for line in process.stderr:
        try:
            event = json.loads(line).get("event")
        except ValueError:  # a traceback or a warning from a library
            continue
        if event == "committed":
            return True
    return False


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
