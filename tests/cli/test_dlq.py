"""``dlq list``, ``replay``, ``delete`` and ``purge`` from the command line.

Every test runs the real CLI in a subprocess and asserts its exact output, its
exit code and the exact contents of the dead-letter file afterwards.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import FILES_SPEC, cli

#: Three letters: the source's "not json" line and two that ``invert`` refused.
MORE_INPUT = '{"a":1}\n{"a":0}\nnot json\n{"a":4}\n{"a":0,"b":2}\n'

#: ``invert`` after a fix: it takes zero now, but not ``b == 2``.
FIXED_INVERT = """

def invert(record):
    if record.get("b") == 2:
        raise ValueError("b=2 is still wrong")
    return {"a": record["a"], "inverse": None if record["a"] == 0 else 1 / record["a"]}
"""


def stored(project: Path) -> list[dict[str, Any]]:
    """The letters in the store's file as ``dlq list --json`` shows them: all but the dedupe key."""
    path = project / "dead.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [{k: v for k, v in json.loads(line).items() if k != "key"} for line in lines]


@pytest.fixture
def dead(project: Path) -> list[dict[str, Any]]:
    """Run the pipeline over :data:`MORE_INPUT`; the three letters it stored."""
    (project / "in.jsonl").write_text(MORE_INPUT)
    assert cli(project, "run", "files.toml").returncode == 0
    letters = stored(project)
    assert [(x["stage"], x["record"]) for x in letters] == [
        ("jsonl", "not json"),
        ("invert", {"a": 0}),
        ("invert", {"a": 0, "b": 2}),
    ]
    return letters


def fix_invert(project: Path) -> None:
    with (project / "helpers.py").open("a") as helpers:
        helpers.write(FIXED_INVERT)


def test_dlq_list(project: Path) -> None:
    assert (
        cli(project, "dlq", "list", "files.toml").stdout == "no dead letters for pipeline files\n"
    )
    assert cli(project, "dlq", "list", "files.toml", "--json").stdout == "[]\n"
    assert cli(project, "run", "files.toml").returncode == 0
    result = cli(project, "dlq", "list", "files.toml", "--json")
    assert len(result.stdout.splitlines()) == 1
    letters = json.loads(result.stdout)
    assert letters == stored(project)
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
    assert limited[2:] == ["1 of 2 dead letters shown; see --limit"]
    exact = cli(project, "dlq", "list", "files.toml", "--limit", "2").stdout.splitlines()
    assert exact[3:] == ["2 dead letters shown"]


def test_list_filters_by_stage_and_time(project: Path, dead: list[dict[str, Any]]) -> None:
    def listed(*options: str) -> list[dict[str, Any]]:
        result = cli(project, "dlq", "list", "files.toml", "--json", *options)
        assert (result.returncode, result.stderr) == (0, "")
        found: list[dict[str, Any]] = json.loads(result.stdout)
        return found

    assert listed("--stage", "invert") == dead[1:]
    assert listed("--stage", "invert", "--limit", "1") == dead[1:2]
    assert listed("--stage", "nothing") == []
    assert listed("--since", "1h") == dead
    assert listed("--since", dead[0]["time"]) == dead
    assert listed("--since", "2999-01-01") == []
    assert listed("--since", "2999-01-01T00:00:00+02:00", "--stage", "jsonl") == []
    table = cli(project, "dlq", "list", "files.toml", "--stage", "x", "--since", "2999-01-01")
    assert table.stdout == (
        "no dead letters for pipeline files (stage x, stored since 2999-01-01T00:00:00+00:00)\n"
    )
    rows = cli(project, "dlq", "list", "files.toml", "--stage", "invert", "--limit", "1")
    assert rows.stdout.splitlines()[2:] == ["1 of 2 dead letters shown; see --limit"]


def test_bad_times_and_limits_are_usage_errors(project: Path) -> None:
    for option, value, error in [
        (
            "--since",
            "yesterday",
            "argument --since: expected an ISO date or time (2026-05-01, 2026-05-01T12:00Z) "
            "or an age (30m, 12h, 2d, 1w), got 'yesterday'",
        ),
        ("--limit", "0", "argument --limit: expected a positive integer, got '0'"),
    ]:
        result = cli(project, "dlq", "list", "files.toml", option, value)
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr.splitlines()[-1] == f"python -m asyncetl dlq list: error: {error}"


def test_replay_removes_exactly_the_letters_that_landed(
    project: Path, dead: list[dict[str, Any]]
) -> None:
    fix_invert(project)
    result = cli(project, "dlq", "replay", "files.toml")
    assert result.returncode == 0
    assert "replayed" in result.stderr
    assert result.stdout == (
        "replayed 3 dead letters: 1 loaded and removed, 2 still failing and kept\n"
        f"  {dead[0]['id']}  jsonl   ValueError: the line is not valid JSON: invalid literal, expected "
        "'null': line 1 column 1 (char 0)\n"
        f"  {dead[2]['id']}  invert  ValueError: b=2 is still wrong\n"
    )
    assert stored(project) == [dead[0], dead[2]]
    assert (project / "out.jsonl").read_text().splitlines()[-1] == '{"a":0,"inverse":null}'


def test_replay_of_chosen_ids_or_a_stage(project: Path, dead: list[dict[str, Any]]) -> None:
    fix_invert(project)
    chosen = cli(project, "dlq", "replay", "files.toml", "--id", dead[1]["id"], "--id", "nope")
    assert chosen.stdout == (
        "replayed 1 dead letter: 1 loaded and removed, 0 still failing and kept\n"
    )
    assert stored(project) == [dead[0], dead[2]]
    staged = cli(project, "dlq", "replay", "files.toml", "--stage", "invert")
    assert staged.stdout == (
        "replayed 1 dead letter: 0 loaded and removed, 1 still failing and kept\n"
        f"  {dead[2]['id']}  invert  ValueError: b=2 is still wrong\n"
    )
    assert stored(project) == [dead[0], dead[2]]


def test_a_dry_run_writes_and_removes_nothing(project: Path, dead: list[dict[str, Any]]) -> None:
    fix_invert(project)
    written = (project / "out.jsonl").read_bytes()
    letters = (project / "dead.jsonl").read_bytes()
    result = cli(project, "dlq", "replay", "files.toml", "--dry-run")
    assert result.returncode == 0
    assert "checked replay" in result.stderr
    assert result.stdout == (
        "dry run, nothing written or removed: of 3 dead letters, 1 pass the transforms and "
        "would go to the sink (not tried), 2 still failing\n"
        f"  {dead[1]['id']}  would go to the sink\n"
        f"  {dead[0]['id']}  jsonl   ValueError: the line is not valid JSON: invalid literal, expected "
        "'null': line 1 column 1 (char 0)\n"
        f"  {dead[2]['id']}  invert  ValueError: b=2 is still wrong\n"
    )
    assert (project / "out.jsonl").read_bytes() == written
    assert (project / "dead.jsonl").read_bytes() == letters


def test_delete_removes_the_given_ids(project: Path, dead: list[dict[str, Any]]) -> None:
    asked = cli(project, "dlq", "delete", "files.toml", "--id", dead[1]["id"])
    assert (asked.returncode, asked.stdout, asked.stderr) == (
        2,
        "",
        "error: dlq delete needs --yes when there is no terminal to confirm on\n",
    )
    assert stored(project) == dead
    ids = ["--id", dead[1]["id"], "--id", dead[2]["id"], "--id", "no-such-id"]
    result = cli(project, "dlq", "delete", "files.toml", *ids, "--yes")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "removed 2 dead letters\n",
        "",
    )
    assert stored(project) == dead[:1]
    again = cli(project, "dlq", "delete", "files.toml", *ids, "--yes")
    assert (again.returncode, again.stdout) == (0, "removed 0 dead letters\n")
    assert stored(project) == dead[:1]
    missing = cli(project, "dlq", "delete", "files.toml", "--yes")
    assert missing.returncode == 2
    assert missing.stderr.splitlines()[-1] == (
        "python -m asyncetl dlq delete: error: the following arguments are required: --id"
    )


def test_purge_by_stage_time_or_all(project: Path, dead: list[dict[str, Any]]) -> None:
    asked = cli(project, "dlq", "purge", "files.toml")
    assert (asked.returncode, asked.stdout, asked.stderr) == (
        2,
        "",
        "error: dlq purge needs --yes when there is no terminal to confirm on\n",
    )
    assert stored(project) == dead
    old = cli(project, "dlq", "purge", "files.toml", "--before", "2000-01-01", "--yes")
    assert (old.returncode, old.stdout) == (0, "removed 0 dead letters\n")
    assert stored(project) == dead
    staged = cli(project, "dlq", "purge", "files.toml", "--stage", "invert", "--yes")
    assert (staged.returncode, staged.stdout) == (0, "removed 2 dead letters\n")
    assert stored(project) == dead[:1]
    everything = cli(project, "dlq", "purge", "files.toml", "--before", "2999-01-01", "--yes")
    assert (everything.returncode, everything.stdout) == (0, "removed 1 dead letter\n")
    assert stored(project) == []


def on_a_terminal(project: Path, answer: str, *args: str) -> tuple[int, str]:
    """Run the CLI with a terminal as its standard input, answering ``answer``; exit code, output."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "asyncetl", *args],
            cwd=project,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.write(controller, answer.encode() + b"\n")
        output, _ = process.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    return process.returncode, output


def test_delete_and_purge_ask_on_a_terminal(project: Path, dead: list[dict[str, Any]]) -> None:
    first = dead[0]["id"]
    declined = on_a_terminal(project, "n", "dlq", "delete", "files.toml", "--id", first)
    assert declined == (
        2,
        f"Delete 1 dead letter of pipeline files (ids {first})? They cannot be replayed "
        "afterwards. [y/N] nothing changed\n",
    )
    assert stored(project) == dead
    accepted = on_a_terminal(project, "y", "dlq", "purge", "files.toml", "--stage", "invert")
    assert accepted == (
        0,
        "Delete 2 dead letters of pipeline files (stage invert)? They cannot be replayed "
        "afterwards. [y/N] removed 2 dead letters\n",
    )
    assert stored(project) == dead[:1]


def test_dlq_without_store_is_a_spec_error(project: Path) -> None:
    (project / "plain.toml").write_text(
        FILES_SPEC.split("[dead_letters]")[0]
        .replace('source_errors = "dead_letter"', "")
        .replace('on_error = "dead_letter"', "")
    )
    commands = [("list",), ("replay",), ("delete", "--id", "1", "--yes"), ("purge", "--yes")]
    for command in commands:
        result = cli(project, "dlq", command[0], "plain.toml", *command[1:])
        assert (result.returncode, result.stdout) == (2, "")
    for command in (commands[0], commands[2], commands[3]):
        assert cli(project, "dlq", command[0], "plain.toml", *command[1:]).stderr == (
            "error: plain.toml: the spec has no [dead_letters] store\n"
        )
    assert cli(project, "dlq", "replay", "plain.toml").stderr == (
        "error: pipeline files: dead_letters: the pipeline has no dead-letter store to replay "
        "from\n"
    )


def unset(name: str) -> str:
    """A ``${VAR}`` reference to a variable no environment sets."""
    assert f"ASYNCETL_TEST_UNSET_{name}" not in os.environ
    return f"${{ASYNCETL_TEST_UNSET_{name}}}"


def test_dlq_needs_only_the_variables_of_the_dead_letter_store(
    project: Path, dead: list[dict[str, Any]]
) -> None:
    spec = (project / "files.toml").read_text()
    (project / "vars.toml").write_text(
        spec.replace('path = "in.jsonl"', f'path = "{unset("SOURCE")}"').replace(
            'path = "out.jsonl"', f'path = "{unset("SINK")}"'
        )
    )
    listed = cli(project, "dlq", "list", "vars.toml", "--json")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert json.loads(listed.stdout) == dead
    # Replay goes through the source's decoding and the sink: it needs their variables.
    replay = cli(project, "dlq", "replay", "vars.toml")
    assert replay.returncode == 2
    assert replay.stderr.splitlines()[-1] == (
        "error: vars.toml: source.path: environment variable ASYNCETL_TEST_UNSET_SOURCE is "
        "not set; set it or write ${ASYNCETL_TEST_UNSET_SOURCE:-default}"
    )
    (project / "store.toml").write_text(
        spec.replace('path = "dead.jsonl"', f'path = "{unset("STORE")}"')
    )
    refused = cli(project, "dlq", "list", "store.toml")
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.splitlines() == [
        "error: store.toml: dead_letters.path: environment variable ASYNCETL_TEST_UNSET_STORE "
        "is not set; set it or write ${ASYNCETL_TEST_UNSET_STORE:-default}"
    ]
    assert stored(project) == dead


def test_dlq_list_needs_no_variable_of_a_transform_but_its_name(
    project: Path, dead: list[dict[str, Any]]
) -> None:
    spec = (project / "files.toml").read_text()
    (project / "policy.toml").write_text(
        spec.replace('on_error = "dead_letter"', f'on_error = "{unset("POLICY")}"')
    )
    listed = cli(project, "dlq", "list", "policy.toml", "--json")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert json.loads(listed.stdout) == dead
    replay = cli(project, "dlq", "replay", "policy.toml")
    assert (replay.returncode, replay.stderr.splitlines()[-1]) == (
        2,
        "error: policy.toml: transforms[0].on_error: environment variable "
        "ASYNCETL_TEST_UNSET_POLICY is not set; set it or write "
        "${ASYNCETL_TEST_UNSET_POLICY:-default}",
    )
    # Letters are filed by stage name: a name made of a variable cannot be told.
    (project / "named.toml").write_text(
        spec.replace('name = "invert"', f'name = "{unset("NAME")}"')
    )
    refused = cli(project, "dlq", "list", "named.toml")
    assert (refused.returncode, refused.stderr.splitlines()) == (
        2,
        [
            "error: named.toml: transforms[0].name: environment variable "
            "ASYNCETL_TEST_UNSET_NAME is not set; set it or write "
            "${ASYNCETL_TEST_UNSET_NAME:-default}"
        ],
    )
    assert stored(project) == dead
