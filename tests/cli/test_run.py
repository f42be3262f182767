"""``python -m asyncetl``: commands, exit codes, output, signals and logging."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import anyio.to_thread
import pytest

from tests.cli.helpers import FILES_SPEC, cli, spawn, summary

# -- help and arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [[], ["run"], ["validate"], ["dlq"], ["dlq", "list"], ["dlq", "replay"]]
)
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    result = cli(tmp_path, *command, "--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"usage: python -m asyncetl {' '.join(command)}".rstrip())


def test_every_command_is_listed(tmp_path: Path) -> None:
    result = cli(tmp_path, "--help")
    assert (result.returncode, result.stderr) == (0, "")
    listed = re.findall(r"^    (\S+)", result.stdout, flags=re.MULTILINE)
    assert listed == [
        "run",
        "validate",
        "status",
        "dlq",
        "cdc",
        "checkpoint",
        "backfill",
        "flow",
    ]
    assert "'backfill status SPEC' shows its" in result.stdout
    assert "'flow status FLOW' shows the latest run" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["backfill"],
        ["backfill", "status"],
        ["flow"],
        ["flow", "status"],
        ["cdc"],
        ["cdc", "status"],
        ["cdc", "drop"],
        ["checkpoint"],
        ["checkpoint", "show"],
    ],
)
def test_backfill_and_flow_commands_have_help(tmp_path: Path, command: list[str]) -> None:
    result = cli(tmp_path, *command, "--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"usage: python -m asyncetl {' '.join(command)} [-h]")


def test_backfill_status_keeps_its_older_name(tmp_path: Path) -> None:
    result = cli(tmp_path, "backfill-status", "--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("usage: python -m asyncetl backfill status [-h]")


@pytest.mark.parametrize(
    "command", [["checkpoint", "show"], ["backfill", "status"], ["flow", "status"]]
)
def test_commands_that_read_state_offer_json(tmp_path: Path, command: list[str]) -> None:
    result = cli(tmp_path, *command, "--help")
    assert "  --json " in result.stdout


def test_version_comes_from_the_package(tmp_path: Path) -> None:
    result = cli(tmp_path, "--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, "asyncetl 0.1.0\n", "")


def test_backfill_specs_logging_table_is_read(tmp_path: Path) -> None:
    (tmp_path / "bf.toml").write_text('[backfill]\nfunction = "m:f"\n\n[logging]\nlevel = "loud"\n')
    result = cli(tmp_path, "backfill", "bf.toml", "--start", "2024-01-01", "--end", "2024-01-02")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "error: bf.toml: logging.level: expected one of 'debug', 'info', 'warning', 'error', "
        "'critical', got 'loud'\n"
    )


def test_bad_arguments_exit_2(project: Path) -> None:
    result = cli(project, "run", "files.toml", "--stop-when-idle", "-1")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "python -m asyncetl run: error: argument --stop-when-idle: expected a positive number "
        "of seconds, got '-1'"
    )
    assert cli(project, "frobnicate").returncode == 2


# -- run -------------------------------------------------------------------------------


def test_run_loads_dead_letters_and_summarises(project: Path) -> None:
    result = cli(project, "run", "files.toml", "--log-format", "json")
    assert result.returncode == 0
    assert re.fullmatch(
        summary("files", "finished", 4, 2, 2, '{"path":"in.jsonl","offset":33}'), result.stdout
    )
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["event"] for e in events] == [
        "starting",
        "dead-lettered",
        "dead-lettered",
        "finished",
    ]
    assert (project / "out.jsonl").read_text() == (
        '{"a":1,"inverse":1.0}\n{"a":4,"inverse":0.25}\n'
    )
    again = cli(project, "run", "files.toml", "--log-level", "warning")
    assert (again.returncode, again.stderr) == (0, "")
    assert re.fullmatch(
        summary("files", "finished", 0, 0, 0, '{"path":"in.jsonl","offset":33}'), again.stdout
    )


def test_summary_tells_a_committed_fresh_start_from_nothing_committed(project: Path) -> None:
    spec = FILES_SPEC.replace('type = "jsonl"\npath = "in.jsonl"', 'type = "helpers:Rewinding"')
    (project / "rewind.toml").write_text(spec.replace('name = "files"', 'name = "rewind"'))
    result = cli(project, "run", "rewind.toml", "--log-level", "warning")
    assert (result.returncode, result.stderr) == (0, "")
    assert re.fullmatch(
        summary(
            "rewind",
            "finished",
            2,
            2,
            0,
            "none (committed: the next run starts from the beginning)",
        ),
        result.stdout,
    )
    (project / "in.jsonl").write_text("")
    (project / "checkpoints.json").unlink()
    empty = cli(project, "run", "files.toml", "--log-level", "warning")
    assert re.fullmatch(
        summary("files", "finished", 0, 0, 0, "none (nothing committed yet)"), empty.stdout
    )


def test_console_logs_by_default_and_spec_logging_table(project: Path) -> None:
    result = cli(project, "validate", "files.toml")
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok: files\n", "")
    result = cli(project, "run", "files.toml")
    assert re.search(r"\[info\s*\] starting ", result.stderr)
    (project / "files.toml").write_text(
        FILES_SPEC + '[logging]\nformat = "json"\nlevel = "warning"\n'
    )
    (project / "checkpoints.json").unlink()
    result = cli(project, "run", "files.toml")
    assert [json.loads(line)["event"] for line in result.stderr.splitlines()] == [
        "dead-lettered",
        "dead-lettered",
    ]


def test_runtime_failure_is_one_line(project: Path) -> None:
    (project / "in.jsonl").write_text('{"a":1}\n{"a":2}\n{"a":3}\n{"a":4}\n')
    (project / "fail.toml").write_text(
        FILES_SPEC.replace('"helpers:invert"', '"helpers:explode"').replace(
            'on_error = "dead_letter"', ""
        )
    )
    result = cli(project, "run", "fail.toml", "--log-format", "json")
    assert (result.returncode, result.stdout) == (1, "")
    *logs, last = result.stderr.splitlines()
    assert last == (
        "error: stage 'invert' failed on the batch ending at position {'path': 'in.jsonl', 'offset': 32}: ValueError: bad record 3"
    )
    assert [json.loads(line)["event"] for line in logs] == ["starting"]
    # No position was committed; only the run's outcome was recorded.
    stored = json.loads((project / "checkpoints.json").read_text())["checkpoints"]
    assert list(stored) == ["files"] and list(stored["files"]) == ["~run outcome"]
    outcome = stored["files"]["~run outcome"]
    assert (outcome["state"], outcome["error"]) == ("failed", last.removeprefix("error: "))


def test_a_setting_a_stage_rejects_while_running_exits_2_with_its_own_message(
    project: Path,
) -> None:
    (project / "versioned.toml").write_text(
        FILES_SPEC.replace('type = "jsonl"\npath = "in.jsonl"', 'type = "helpers:Versioned"')
    )
    moved = cli(project, "checkpoint", "reset", "versioned.toml", "--to", '{"v1": 7}', "--yes")
    assert moved.returncode == 0
    result = cli(project, "run", "versioned.toml")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == (
        "error: Versioned 'versioned': position: cannot resume from {'v1': 7} "
        "(python -m asyncetl checkpoint show|reset versioned.toml)"
    )


def test_a_missing_sink_table_names_the_file_and_key(project: Path) -> None:
    (project / "to_sqlite.toml").write_text(
        FILES_SPEC.replace(
            'type = "jsonl"\npath = "out.jsonl"',
            'type = "sqlite"\npath = "out.db"\ntable = "nope"\ncreate = false',
        )
    )
    result = cli(project, "run", "to_sqlite.toml")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines()[-1] == (
        "error: to_sqlite.toml: sink.table: SQLite table 'nope' does not exist in out.db; "
        "create it or set create = true"
    )


def test_a_missing_source_file_names_the_file_and_key(project: Path) -> None:
    (project / "in.jsonl").unlink()
    result = cli(project, "run", "files.toml")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines()[-1] == (
        "error: files.toml: source.path: stage 'jsonl' failed reading from the start: "
        "PermanentError: file in.jsonl does not exist; check the path"
    )


@pytest.mark.anyio
async def test_a_missing_source_table_names_the_file_and_key(
    project: Path, pg_database: str
) -> None:
    (project / "from_pg.toml").write_text(
        FILES_SPEC.replace(
            'type = "jsonl"\npath = "in.jsonl"',
            f'type = "postgres"\ndsn = "{pg_database}"\ntable = "absent"\ncursor = ["id"]',
        )
    )
    result = await anyio.to_thread.run_sync(cli, project, "run", "from_pg.toml")
    assert (result.returncode, result.stdout) == (1, "")
    where = pg_database.removeprefix("postgresql://").split("@")[-1]
    assert result.stderr.splitlines()[-1] == (
        f"error: from_pg.toml: source.table: source table absent does not exist in {where}; "
        "fix the table name or the DSN"
    )


def test_unexpected_error_is_one_line_and_debug_logs_the_traceback(project: Path) -> None:
    (project / "broken.toml").write_text(
        FILES_SPEC.replace('type = "jsonl"\npath = "in.jsonl"', 'type = "helpers:BrokenOpen"')
    )
    result = cli(project, "run", "broken.toml")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "error: RuntimeError: boom while opening\n"
    result = cli(project, "run", "broken.toml", "--log-level", "debug", "--log-format", "json")
    *logs, last = result.stderr.splitlines()
    assert (result.returncode, last) == (1, "error: RuntimeError: boom while opening")
    event = json.loads(logs[-1])
    assert (event["event"], event["level"]) == ("unexpected error", "debug")
    assert event["exception"][0]["exc_type"] == "RuntimeError"
    assert "Traceback" not in result.stderr


def test_stop_when_idle_ends_a_followed_source(project: Path) -> None:
    (project / "follow.toml").write_text(
        FILES_SPEC.replace(
            'path = "in.jsonl"', 'path = "in.jsonl"\nfollow = true\npoll_interval = 0.05'
        )
    )
    result = cli(project, "run", "follow.toml", "--stop-when-idle", "0.3", "--log-level", "error")
    assert (result.returncode, result.stderr) == (0, "")
    assert re.fullmatch(
        summary("files", "finished", 4, 2, 2, '{"path":"in.jsonl","offset":33}'), result.stdout
    )


TICKER_SPEC = """
[pipeline]
name = "ticks"
max_batch_age = 0.05
grace_period = 30

[source]
type = "helpers:Ticker"

[sink]
type = "SINK"

[checkpoints]
type = "json"
path = "checkpoints.json"
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_gracefully(project: Path, signum: signal.Signals) -> None:
    (project / "ticks.toml").write_text(TICKER_SPEC.replace('"SINK"', '"jsonl"\npath = "o.jsonl"'))
    process = spawn(project, "run", "ticks.toml")
    while not (project / "checkpoints.json").exists():
        time.sleep(0.01)
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    loaded = (project / "o.jsonl").read_text().splitlines()
    committed = json.loads((project / "checkpoints.json").read_text())
    position = committed["checkpoints"]["ticks"]["ticker"]
    assert loaded == [json.dumps({"n": n}, separators=(",", ":")) for n in range(1, position + 1)]
    assert re.fullmatch(
        summary("ticks", f"stopped by {signum.name}", position, position, 0, str(position)), out
    )
    assert "stopping; draining in-flight batches" in err


def test_second_signal_stops_at_once(project: Path) -> None:
    (project / "ticks.toml").write_text(TICKER_SPEC.replace('"SINK"', '"helpers:Stuck"'))
    process = spawn(project, "run", "ticks.toml")
    # Only a batch stuck in the sink makes the graceful stop wait for the second signal.
    while not (project / "stuck").exists():
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    assert process.stderr is not None
    for line in process.stderr:
        if json.loads(line)["event"] == "stopping":
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert out.startswith(
        "pipeline ticks stopped before draining (what was not committed is read again next run) in "
    )
    # No position was committed; only the run's outcome was recorded.
    stored = json.loads((project / "checkpoints.json").read_text())["checkpoints"]
    assert list(stored) == ["ticks"] and list(stored["ticks"]) == ["~run outcome"]
    assert (stored["ticks"]["~run outcome"]["state"], stored["ticks"]["~run outcome"]["error"]) == (
        "stopped",
        None,
    )


def test_a_spec_without_checkpoints_says_the_next_run_starts_over(project: Path) -> None:
    spec = FILES_SPEC.replace('[checkpoints]\ntype = "json"\npath = "checkpoints.json"\n', "")
    assert "[checkpoints]" not in spec
    (project / "nocheck.toml").write_text(spec.replace('name = "files"', 'name = "nocheck"'))
    for _ in range(2):  # each run reads everything again, and says so
        result = cli(project, "run", "nocheck.toml", "--log-format", "json")
        assert result.returncode == 0, result.stderr
        events = [json.loads(line) for line in result.stderr.splitlines()]
        assert events[0] == {
            "event": "positions are kept in memory only: the next run of nocheck.toml starts "
            "from the beginning again; add a [checkpoints] table to resume where a run ends",
            "pipeline": "nocheck",
            "level": "warning",
            "timestamp": events[0]["timestamp"],
        }
        assert "  records_in     4\n" in result.stdout
