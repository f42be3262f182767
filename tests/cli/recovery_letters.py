"""What the crash-recovery tests with dead letters share, whatever stores the records.

JSON lines (every 997th not JSON) → a validating transform (every record whose
``v`` is a multiple of 101 invalid) → a sink. Every line has the same length and
a source block holds exactly one batch of lines, so chunks, batches and thus
dead-letter positions do not depend on where a run resumed.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.test_recovery import start

LINE = 48  # bytes per line, newline included

TRANSFORM = """
def check(record):
    if record["v"] % 101 == 0:
        raise ValueError(f"v {record['v']} is a multiple of 101")
    return {"id": record["id"], "v": record["v"]}
"""

#: The spec up to its sink: formatted with ``input``, ``batch`` and ``block`` (bytes).
SPEC_HEAD = """
[pipeline]
name = "letters"
max_batch_size = {batch}
max_batch_age = 600
source_errors = "dead_letter"

[source]
type = "jsonl"
path = "{input}"
block_size = {block}

[[transforms]]
function = "letters_transform:check"
name = "check"
on_error = "dead_letter"
"""

#: A dead letter as compared: pipeline, stage, record, position.
Letter = tuple[str, str, object, object]


def line(i: int) -> bytes:
    """Line ``i`` padded to :data:`LINE` bytes: every 997th is not JSON."""
    if i % 997 == 0:
        text = f"{{broken {i} "
        return (text + "x" * (LINE - 1 - len(text)) + "\n").encode()
    text = f'{{"id":{i},"v":{i * 7 % 1000},"p":"'
    return (text + "x" * (LINE - 3 - len(text)) + '"}\n').encode()


def dead_lettered(records: int) -> tuple[int, int]:
    """Of the first ``records`` lines, how many are not JSON, and how many the transform refuses."""
    bad_json = len(range(0, records, 997))
    invalid = sum(1 for i in range(records) if i % 997 and i * 7 % 1000 % 101 == 0)
    return bad_json, invalid


def write_spec(directory: Path, text: str) -> Path:
    """``directory/letters.toml`` holding ``text``, the transform's module beside it."""
    directory.mkdir()
    (directory / "letters_transform.py").write_text(TRANSFORM)
    spec = directory / "letters.toml"
    spec.write_text(text)
    return spec


def clean_run(spec: Path) -> float:
    """Run once uninterrupted; how long the pipeline ran."""
    process = start(spec, "--log-level", "warning")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    elapsed = re.search(r"finished in ([0-9.]+) s", out)
    assert elapsed is not None, out
    return float(elapsed[1])
