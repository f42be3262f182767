"""``dlq list`` and ``dlq replay`` from the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.helpers import FILES_SPEC, cli


def test_dlq_list(project: Path) -> None:
    assert (
        cli(project, "dlq", "list", "files.toml").stdout == "no dead letters for pipeline files\n"
    )
    assert cli(project, "run", "files.toml").returncode == 0
    result = cli(project, "dlq", "list", "files.toml", "--json")
    letters = [json.loads(line) for line in result.stdout.splitlines()]
    assert [
        (x["stage"], x["error_type"], x["error"], x["record"], x["position"]) for x in letters
    ] == [
        (
            "jsonl",
            "ValueError",
            "line at byte 16 of in.jsonl is not valid JSON: invalid literal, "
            "expected 'null': line 1 column 1 (char 0)",
            "not json",
            {"path": "in.jsonl", "offset": 33},
        ),
        (
            "invert",
            "ZeroDivisionError",
            "division by zero",
            {"a": 0},
            {"path": "in.jsonl", "offset": 33},
        ),
    ]
    table = cli(project, "dlq", "list", "files.toml").stdout.splitlines()
    assert re.fullmatch(r"ID +TIME +STAGE +ERROR TYPE +ERROR +RECORD", table[0])
    for row, letter in zip(table[1:3], letters, strict=True):
        assert row.startswith(f"{letter['id']}  {letter['time'][:10]} {letter['time'][11:19]}  ")
        assert letter["error_type"] in row
    assert table[2].endswith('{"a":0}')
    assert "line at byte 16 of in.jsonl is not valid JSON: …" in table[1]
    assert table[3:] == ["2 dead letters shown"]
    limited = cli(project, "dlq", "list", "files.toml", "--limit", "1").stdout.splitlines()
    assert limited[2:] == ["1 dead letter shown; there may be more, see --limit"]


def test_dlq_without_store_is_a_spec_error(project: Path) -> None:
    (project / "plain.toml").write_text(
        FILES_SPEC.split("[dead_letters]")[0]
        .replace('source_errors = "dead_letter"', "")
        .replace('on_error = "dead_letter"', "")
    )
    for command in ("list", "replay"):
        result = cli(project, "dlq", command, "plain.toml")
        assert (result.returncode, result.stdout) == (2, "")
    assert cli(project, "dlq", "list", "plain.toml").stderr == (
        "error: plain.toml: the spec has no [dead_letters] store\n"
    )
    assert cli(project, "dlq", "replay", "plain.toml").stderr == (
        "error: pipeline files: dead_letters: the pipeline has no dead-letter store to replay "
        "from\n"
    )
