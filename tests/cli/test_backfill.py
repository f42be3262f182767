"""``backfill`` and ``backfill status`` (also ``backfill-status``) from the command line."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import anyio
import pytest

from asyncetl.cli import main
from asyncetl.connectors.sqlite.backfill_store import SqliteBackfillStore

REPO = Path(__file__).resolve().parents[2]
SPEC = """
[backfill]
name = "cli"
function = "tests.backfill.jobs:write_marker"
every = "day"
store = "{store}"
max_tries = 1

[backfill.params]
marker = "{marker}"
sleep = {sleep}
fail = "${{FAIL:-}}"
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(SPEC.format(store=tmp_path / "bf.db", marker=tmp_path / "marker", sleep=0))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("start", "end", "extra", "message"),
    [
        (
            "2024-02-30",
            "2024-03-01",
            [],
            "start: '2024-02-30' is not a valid date (day is out of range for month)",
        ),
        (
            "2024-03-01",
            "2024-01-01",
            [],
            "start: start 2024-03-01 is after end 2024-01-01; swap them",
        ),
        (
            "01/02/2024",
            "2024-03-01",
            [],
            "start: '01/02/2024' is not a date; write it as YYYY-MM, "
            "YYYY-MM-DD or YYYY-MM-DDTHH[:MM[:SS]][+HH:MM]",
        ),
        ("1", "100", ["--every", "int"], "size: integer partitions need a size, e.g. --size 10000"),
        (
            "9999-12-01",
            "9999-12-31",
            [],
            "end: '9999-12-31' is too late: the day holding it would end after year 9999",
        ),
        (
            "9999-12-01",
            "9999-12-31T10:00",
            ["--every", "month"],
            "end: '9999-12-31T10:00' is too late: the month holding it would end after year 9999",
        ),
        (
            "0001-01-01T00:00+05:00",
            "2024-01-01",
            [],
            "start: '0001-01-01T00:00+05:00' is out of range in UTC",
        ),
    ],
)
def test_bad_ranges_exit_2_with_one_message(
    capsys: pytest.CaptureFixture[str],
    spec: Path,
    start: str,
    end: str,
    extra: list[str],
    message: str,
) -> None:
    code, out, err = run(capsys, "backfill", str(spec), "--start", start, "--end", end, *extra)
    assert (code, out, err) == (2, "", f"error: {message}\n")


def test_spec_mistakes_exit_2_naming_file_and_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('[backfill]\nfunction = "tests.backfill.jobs:noop"\nparalel = 4\n')
    code, _, err = run(
        capsys, "backfill", str(spec), "--start", "2024-01-01", "--end", "2024-01-02"
    )
    assert code == 2
    assert err.startswith(
        f"error: {spec}: backfill.paralel: unknown key 'paralel'; expected one of "
    )
    spec.write_text('[backfill]\nfunction = "no_such_module:job"\n')
    code, _, err = run(
        capsys, "backfill", str(spec), "--start", "2024-01-01", "--end", "2024-01-02"
    )
    assert (code, err) == (
        2,
        f"error: {spec}: backfill.function: module 'no_such_module' not found\n",
    )
    spec.write_text('[backfill]\nfunction = "tests.backfill.jobs:noop"\n')
    code, _, err = run(capsys, "backfill", str(spec))
    assert (code, err) == (
        2,
        f"error: {spec}: give the range with --start and --end (or start and end in the spec)\n",
    )


def test_a_failed_partition_exits_1_and_rerun_failed_finishes_the_job(
    capsys: pytest.CaptureFixture[str], spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL", "2024-01-02")
    code, out, err = run(
        capsys, "backfill", str(spec), "--start", "2024-01-01", "--end", "2024-01-03"
    )
    assert code == 1
    assert err.endswith(
        "error: 1 partition(s) failed: 2024-01-02; fix the cause and run again "
        "with --rerun-failed\n"
    )
    assert [line.rstrip() for line in out.splitlines()][-6:] == [
        "backfill cli: 3 partitions, 2 succeeded, 1 failed",
        "┏━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓",
        "┃ partition  ┃ status ┃ attempts ┃ error                                        ┃",
        "┡━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩",
        "│ 2024-01-02 │ failed │ 1        │ RuntimeError: partition 2024-01-02 is broken │",
        "└────────────┴────────┴──────────┴──────────────────────────────────────────────┘",
    ]

    monkeypatch.delenv("FAIL")
    code, out, err = run(
        capsys, "backfill", str(spec), "--start", "2024-01-01", "--end", "2024-01-03"
    )
    assert code == 1  # a plain re-run leaves failed partitions alone
    code, out, err = run(
        capsys,
        "backfill",
        str(spec),
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-03",
        "--rerun-failed",
    )
    assert code == 0
    marker = (spec.parent / "marker").read_text().split("\n")
    assert sorted(line for line in marker if line.startswith("end")) == [
        "end 2024-01-01",
        "end 2024-01-02",
        "end 2024-01-03",
    ]
    code, out, _ = run(capsys, "backfill", "status", str(spec))
    assert code == 0
    # The counts in words, and no table: every partition succeeded.
    assert [line.rstrip() for line in out.splitlines()] == [
        "backfill cli: 3 partitions, 3 succeeded"
    ]
    assert run(capsys, "backfill-status", str(spec)) == (code, out, "")  # the older name


def test_status_json_is_one_document_with_every_partition(
    capsys: pytest.CaptureFixture[str], spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL", "2024-01-02")
    code, _, _ = run(capsys, "backfill", str(spec), "--start", "2024-01-01", "--end", "2024-01-03")
    assert code == 1
    code, out, err = run(capsys, "backfill", "status", str(spec), "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert (document["backfill"], document["counts"]) == (
        "cli",
        {"succeeded": 2, "failed": 1, "running": 0, "pending": 0},
    )
    assert [
        (p["key"], p["status"], p["attempts"], p["error"], p["stale_lease"])
        for p in document["partitions"]
    ] == [
        ("2024-01-01", "succeeded", 1, None, False),
        ("2024-01-02", "failed", 1, "RuntimeError: partition 2024-01-02 is broken", False),
        ("2024-01-03", "succeeded", 1, None, False),
    ]
    assert all(p["finished_at"] is not None for p in document["partitions"])


def test_integer_ranges_and_status_of_a_scope(
    capsys: pytest.CaptureFixture[str], spec: Path
) -> None:
    code, _, _ = run(
        capsys,
        "backfill",
        str(spec),
        "--every",
        "int",
        "--size",
        "10",
        "--start",
        "0",
        "--end",
        "24",
        "--parallel",
        "2",
    )
    assert code == 0
    code, out, _ = run(
        capsys,
        "backfill",
        "status",
        str(spec),
        "--every",
        "int",
        "--size",
        "10",
        "--start",
        "0",
        "--end",
        "9",
        "--all",
    )
    assert "backfill cli: 1 partition, 1 succeeded" in out
    assert "│ 0..9      │ succeeded │ 1        │" in out


# -- signals, in a real process ---------------------------------------------------------


async def start(spec: Path) -> anyio.abc.Process:
    command = [
        sys.executable,
        "-m",
        "asyncetl",
        "backfill",
        str(spec),
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-06",
        "--parallel",
        "2",
    ]
    with (spec.parent / "output").open("wb") as output:
        return await anyio.open_process(command, cwd=REPO, stdout=output, stderr=output)


async def wait_for_starts(marker: Path, count: int) -> None:
    with anyio.fail_after(20):
        while not marker.exists() or marker.read_text().count("start ") < count:
            await anyio.sleep(0.02)


async def states_of(path: Path) -> dict[str, str]:
    store = SqliteBackfillStore(path)
    await store.open()
    try:
        return {s.key: s.status for s in await store.states("cli")}
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_sigterm_lets_running_partitions_finish_and_exits_0(tmp_path: Path) -> None:
    spec = tmp_path / "cli.toml"
    spec.write_text(SPEC.format(store=tmp_path / "bf.db", marker=tmp_path / "marker", sleep=1.0))
    process = await start(spec)
    await wait_for_starts(tmp_path / "marker", 2)
    process.send_signal(signal.SIGTERM)
    with anyio.fail_after(20):
        code = await process.wait()
    output = (tmp_path / "output").read_text()
    assert code == 0, output
    assert "stopped with 4 partition(s) pending; run the same command again to continue" in output
    lines = (tmp_path / "marker").read_text().split()
    assert lines.count("start") == lines.count("end") == 2
    states = await states_of(tmp_path / "bf.db")
    assert sorted(states.values()) == ["pending"] * 4 + ["succeeded"] * 2


@pytest.mark.anyio
async def test_a_second_signal_hands_partitions_back_and_exits_130(tmp_path: Path) -> None:
    spec = tmp_path / "cli.toml"
    spec.write_text(SPEC.format(store=tmp_path / "bf.db", marker=tmp_path / "marker", sleep=60))
    process = await start(spec)
    await wait_for_starts(tmp_path / "marker", 2)
    process.send_signal(signal.SIGINT)
    await anyio.sleep(0.2)
    process.send_signal(signal.SIGINT)
    with anyio.fail_after(20):
        assert await process.wait() == 130
    assert set((await states_of(tmp_path / "bf.db")).values()) == {"pending"}
