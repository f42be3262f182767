"""Shared by the command-line tests: a small project of files, and ways to run the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

HELPERS = '''
from pathlib import Path

import anyio
from asyncetl import Chunk, ConfigError, Sink, Source


class Ticker(Source[dict]):
    """Endless: one record every ``interval`` seconds; the position counts records."""

    def __init__(self, *, name: str = "ticker", interval: float = 0.01) -> None:
        self.name, self.interval = name, interval

    async def read(self, after, *, max_chunk):
        n = after or 0
        while True:
            await anyio.sleep(self.interval)
            n += 1
            yield Chunk([{"n": n}], n)


class Stuck(Sink[object]):
    """Never finishes a write; says so in the file ``stuck`` once a write started."""

    async def write(self, batch):
        Path("stuck").touch()
        await anyio.sleep(3600)
        return ()


class Versioned(Source[dict]):
    """Reads positions of the form {"v2": n} only, like a source whose settings changed."""

    name = "versioned"

    async def read(self, after, *, max_chunk):
        if after is not None and "v2" not in after:
            raise ConfigError(
                f"cannot resume from {after!r}", where="Versioned 'versioned'", key="position"
            )
        yield Chunk([{"n": 1}], {"v2": 1})


class Rewinding(Source[dict]):
    """Reads two records, then commits None: a full scan that starts over next run."""

    name = "rewinding"

    async def read(self, after, *, max_chunk):
        yield Chunk([{"a": 1}, {"a": 2}], 2)
        yield Chunk([], None)


class BrokenOpen(Source[dict]):
    async def open(self):
        raise RuntimeError("boom while opening")

    async def read(self, after, *, max_chunk):
        yield Chunk([], None)


def explode(record):
    if record["a"] == 3:
        raise ValueError(f"bad record {record['a']}")
    return record


def invert(record):
    return {"a": record["a"], "inverse": 1 / record["a"]}
'''

FILES_SPEC = """
[pipeline]
name = "files"
source_errors = "dead_letter"

[source]
type = "jsonl"
path = "in.jsonl"

[[transforms]]
function = "helpers:invert"
name = "invert"
on_error = "dead_letter"

[sink]
type = "jsonl"
path = "out.jsonl"

[checkpoints]
type = "json"
path = "checkpoints.json"

[dead_letters]
type = "jsonl"
path = "dead.jsonl"
"""

INPUT = '{"a":1}\n{"a":0}\nnot json\n{"a":4}\n'


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncetl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def spawn(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """Start a run with JSON logs and return once it logged ``starting``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncetl", *args, "--log-format", "json"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if json.loads(line)["event"] == "starting":
            return process
    process.kill()
    raise AssertionError(f"the run ended before starting: {process.communicate()}")


def summary(
    name: str,
    how: str,
    records_in: int,
    records_out: int,
    dead: int,
    position: str,
    *,
    unchanged: int = 0,
) -> str:
    """The run summary as a regular expression (the elapsed time varies)."""
    return (
        re.escape(f"pipeline {name} {how} in ")
        + r"\d+\.\d\d"
        + re.escape(
            f" s\n  records_in     {records_in}\n  records_out    {records_out}\n"
            f"  unchanged      {unchanged}\n  dead_lettered  {dead}\n  position       {position}\n"
        )
    )
