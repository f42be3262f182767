"""``python -m asyncetl checkpoint show|reset``: read and move the committed position."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

from tests.cli.helpers import FILES_SPEC, cli, summary

AT_8 = '{"path":"in.jsonl","offset":8}'
AT_33 = '{"path":"in.jsonl","offset":33}'


def test_show_reports_the_position_the_next_run_resumes_after(project: Path) -> None:
    assert cli(project, "checkpoint", "show", "files.toml").stdout == (
        "pipeline files (source jsonl): null\n"
    )
    assert cli(project, "run", "files.toml").returncode == 0
    result = cli(project, "checkpoint", "show", "files.toml")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        'pipeline files (source jsonl): {"path":"in.jsonl","offset":33}\n',
        "",
    )
    shown = cli(project, "checkpoint", "show", "files.toml", "--json")
    assert (shown.returncode, json.loads(shown.stdout), shown.stderr) == (
        0,
        {"pipeline": "files", "source": "jsonl", "position": {"path": "in.jsonl", "offset": 33}},
        "",
    )


def test_reset_to_a_position_makes_the_next_run_read_what_follows_it(project: Path) -> None:
    assert cli(project, "run", "files.toml").returncode == 0
    moved = cli(project, "checkpoint", "reset", "files.toml", "--to", AT_8, "--yes")
    assert (moved.returncode, moved.stdout) == (
        0,
        f"pipeline files (source jsonl): {AT_33} -> {AT_8}\n",
    )
    rerun = cli(project, "run", "files.toml")
    # The three lines after byte 8: {"a":0} and "not json" dead-lettered, {"a":4} loaded again.
    assert re.fullmatch(summary("files", "finished", 3, 1, 2, AT_33), rerun.stdout)
    lines = (project / "out.jsonl").read_text().splitlines()
    assert lines == ['{"a":1,"inverse":1.0}', '{"a":4,"inverse":0.25}', '{"a":4,"inverse":0.25}']


def test_reset_without_a_position_starts_over(project: Path) -> None:
    assert cli(project, "run", "files.toml").returncode == 0
    moved = cli(project, "checkpoint", "reset", "files.toml", "--yes")
    assert (moved.returncode, moved.stdout) == (
        0,
        f"pipeline files (source jsonl): {AT_33} -> null\n",
    )
    assert re.fullmatch(
        summary("files", "finished", 4, 2, 2, AT_33), cli(project, "run", "files.toml").stdout
    )


def test_reset_asks_first_and_refuses_bad_input_with_exit_2(project: Path) -> None:
    assert cli(project, "run", "files.toml").returncode == 0
    unconfirmed = cli(project, "checkpoint", "reset", "files.toml", "--to", AT_8)
    assert (unconfirmed.returncode, unconfirmed.stdout, unconfirmed.stderr) == (
        2,
        "",
        "error: checkpoint reset needs --yes when there is no terminal to confirm on\n",
    )
    garbled = cli(project, "checkpoint", "reset", "files.toml", "--to", "not json", "--yes")
    assert (garbled.returncode, garbled.stdout, garbled.stderr) == (
        2,
        "",
        "error: --to must be a JSON position, not 'not json' (invalid literal, expected "
        "'null': line 1 column 1 (char 0))\n",
    )
    assert cli(project, "checkpoint", "show", "files.toml").stdout.endswith(f": {AT_33}\n")


def test_a_spec_without_a_checkpoint_store_has_nothing_to_show_or_reset(project: Path) -> None:
    without = FILES_SPEC.split("[checkpoints]")[0] + "[dead_letters]"
    (project / "none.toml").write_text(without + FILES_SPEC.split("[dead_letters]")[1])
    in_memory = FILES_SPEC.replace('type = "json"\npath = "checkpoints.json"', 'type = "memory"')
    (project / "memory.toml").write_text(in_memory)
    for spec, command in itertools.product(("none.toml", "memory.toml"), ("show", "reset")):
        confirmed = ["--yes"] if command == "reset" else []
        result = cli(project, "checkpoint", command, spec, *confirmed)
        assert (result.returncode, result.stdout, result.stderr) == (
            2,
            "",
            f"error: {spec}: the spec keeps checkpoints in memory, so every run starts "
            "from the beginning and there is no position to show or reset; add a "
            "[checkpoints] table\n",
        )


def test_a_file_source_pointed_at_another_file_refuses_the_old_position(project: Path) -> None:
    assert cli(project, "run", "files.toml").returncode == 0
    (project / "other.jsonl").write_text('{"a":2}\n' * 10)
    (project / "other.toml").write_text(FILES_SPEC.replace('"in.jsonl"', '"other.jsonl"'))
    result = cli(project, "run", "other.toml")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == (
        "error: JsonlSource 'jsonl': position: cannot resume from the committed position "
        f'{AT_33}: it was written for file "in.jsonl", not for path "other.jsonl"; point path '
        'back there, or to read "other.jsonl" from the start, reset the checkpoint '
        "(python -m asyncetl checkpoint reset other.toml)"
    )
    assert not (project / "out.jsonl").read_text().count('"a":2')


def test_reset_to_a_position_the_source_refuses_writes_nothing(project: Path) -> None:
    assert cli(project, "run", "files.toml").returncode == 0
    before = (project / "checkpoints.json").read_bytes()
    refused = {
        '{"path":"other.jsonl","offset":8}': (
            'cannot resume from the committed position {"path":"other.jsonl","offset":8}: it '
            'was written for file "other.jsonl", not for path "in.jsonl"; point path back '
            'there, or to read "in.jsonl" from the start, reset the checkpoint '
            "(python -m asyncetl checkpoint reset files.toml)"
        ),
        '"8"': (
            'cannot resume from the committed position "8", which is not a byte offset into '
            '"in.jsonl" ({"path": ..., "offset": n}); reset the checkpoint '
            "(python -m asyncetl checkpoint reset files.toml)"
        ),
    }
    for position, message in refused.items():
        result = cli(project, "checkpoint", "reset", "files.toml", "--to", position, "--yes")
        assert (result.returncode, result.stdout, result.stderr) == (
            2,
            "",
            f"error: JsonlSource 'jsonl': position: {message}\n",
        )
        assert (project / "checkpoints.json").read_bytes() == before
    # A bare offset, as positions were written before they named their file, is accepted.
    moved = cli(project, "checkpoint", "reset", "files.toml", "--to", "8", "--yes")
    assert (moved.returncode, moved.stdout) == (0, f"pipeline files (source jsonl): {AT_33} -> 8\n")


ICEBERG_SPEC = """
[pipeline]
name = "lake"

[source]
type = "jsonl"
path = "nums.jsonl"

[sink]
type = "iceberg"
warehouse = "warehouse"
table = "shop.numbers"
commit_interval = 0.1

[checkpoints]
type = "iceberg"
warehouse = "warehouse"
"""


def test_reset_of_a_position_kept_in_iceberg_snapshots_says_how_to_start_over(
    project: Path,
) -> None:
    (project / "lake.toml").write_text(ICEBERG_SPEC)
    (project / "nums.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    assert cli(project, "run", "lake.toml").returncode == 0
    refused = cli(project, "checkpoint", "reset", "lake.toml", "--yes")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        "error: IcebergCheckpointStore cannot reset pipeline 'lake': its position is kept in "
        "the snapshots of the tables its IcebergSink committed; to start over, drop those "
        "tables or run under another pipeline name\n"
    )
    shown = cli(project, "checkpoint", "show", "lake.toml")
    assert shown.stdout == 'pipeline lake (source jsonl): {"path":"nums.jsonl","offset":18}\n'
