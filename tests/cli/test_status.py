"""``status SPEC``: the committed position, dead letters and a running pipeline's live figures."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.cli.helpers import FILES_SPEC, HELPERS, INPUT, cli, spawn
from tests.ports import free_port

TICKING = """
from asyncetl import ListSink, Pipeline
from helpers import Ticker


def pipeline():
    return Pipeline("ticking", Ticker(interval=0.02), ListSink(), max_batch_age=0.05)
"""


def files_project(tmp_path: Path) -> Path:
    (tmp_path / "helpers.py").write_text(HELPERS)
    (tmp_path / "pipeline.toml").write_text(FILES_SPEC)
    (tmp_path / "in.jsonl").write_text(INPUT)
    (tmp_path / "ticking.py").write_text(TICKING)
    return tmp_path


def when(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ages(saved: datetime, before: datetime, after: datetime) -> set[str]:
    """Every age line ``status`` may print for a position saved at ``saved``, asked between."""
    low = round((before - saved).total_seconds(), 1)
    high = round((after - saved).total_seconds(), 1) + 0.1
    tenths = range(round(low * 10), round(high * 10) + 1)
    return {f"  saved         {when(saved.isoformat())} ({n / 10:.1f} s ago)" for n in tenths}


def test_status_of_a_stopped_pipeline_shows_its_position_its_age_and_the_last_run(
    tmp_path: Path,
) -> None:
    project = files_project(tmp_path)
    assert cli(project, "run", "pipeline.toml").returncode == 0
    stored = json.loads((project / "checkpoints.json").read_text())
    saved = datetime.fromisoformat(stored["saved_at"]["files"]["jsonl"])
    outcome = stored["checkpoints"]["files"]["~run outcome"]
    assert (outcome["state"], outcome["error"]) == ("finished", None)
    url = f"http://127.0.0.1:{free_port()}"
    before = datetime.now(UTC)
    result = cli(project, "status", "pipeline.toml", "--url", url)
    after = datetime.now(UTC)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[2] in ages(saved, before, after)
    assert lines[:2] + lines[3:] == [
        "pipeline files (source jsonl)",
        '  position      {"path":"in.jsonl","offset":33}',
        f"  last run      finished at {when(outcome['time'])}",
        "  dead_letters  2",
        f"  running       not answering at {url}",
    ]
    result = cli(project, "status", "pipeline.toml", "--url", url, "--json")
    document = json.loads(result.stdout)
    assert 0 < document.pop("age_s") < 60
    assert document == {
        "pipeline": "files",
        "source": "jsonl",
        "position": {"path": "in.jsonl", "offset": 33},
        "saved_at": saved.isoformat(),
        "last_run": outcome,
        "dead_letters": 2,
        "endpoint": {"url": url, "status": None},
        "cdc": None,
    }


def test_status_shows_a_failed_run_with_its_one_line_error(tmp_path: Path) -> None:
    project = files_project(tmp_path)
    spec = (project / "pipeline.toml").read_text()
    (project / "failing.toml").write_text(spec.replace('on_error = "dead_letter"', ""))
    run = cli(project, "run", "failing.toml")
    assert run.returncode == 1
    error = run.stderr.splitlines()[-1].removeprefix("error: ")
    stored = json.loads((project / "checkpoints.json").read_text())
    outcome = stored["checkpoints"]["files"]["~run outcome"]
    assert (outcome["state"], outcome["error"]) == ("failed", error)
    url = f"http://127.0.0.1:{free_port()}"
    lines = cli(project, "status", "failing.toml", "--url", url).stdout.splitlines()
    assert lines[1:5] == [
        "  position      none",
        "  saved         never",
        f"  last run      failed at {when(outcome['time'])}: {error}",
        "  dead_letters  0",
    ]
    assert error == (
        "stage 'invert' failed on the batch ending at position "
        "{'path': 'in.jsonl', 'offset': 33}: ZeroDivisionError: division by zero"
    )


def test_status_of_a_running_pipeline_adds_its_live_figures(tmp_path: Path) -> None:
    project = files_project(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = spawn(project, "run", "ticking:pipeline", "--status-port", str(port))
    try:
        deadline = time.monotonic() + 15
        while True:
            lines = cli(project, "status", "ticking:pipeline", "--url", url).stdout.splitlines()
            committed = len(lines) > 8 and lines[8] != "  last commit   none yet"
            if committed or time.monotonic() > deadline:
                break
        assert lines[:6] == [
            "pipeline ticking (source ticker)",
            "  position      none",
            "  saved         never",
            "  last run      none recorded",
            "  dead_letters  no store",
            f"  running       running at {url}: ready",
        ]
        assert lines[6].startswith("  records/s     ")
        assert lines[7].startswith("  records       in ")
        assert lines[8].startswith("  last commit   ") and lines[8].endswith(" s ago")
    finally:
        process.terminate()
        process.communicate(timeout=30)


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


def test_status_of_a_pipeline_checkpointed_in_iceberg_shows_when_and_how_its_run_ended(
    tmp_path: Path,
) -> None:
    from pyiceberg.catalog.sql import SqlCatalog

    (tmp_path / "lake.toml").write_text(ICEBERG_SPEC)
    (tmp_path / "nums.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    assert cli(tmp_path, "run", "lake.toml").returncode == 0
    warehouse = tmp_path / "warehouse"
    catalog = SqlCatalog(
        "asyncetl", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.as_uri()
    )
    table = catalog.load_table("shop.numbers")
    snapshot = table.current_snapshot()
    assert snapshot is not None
    committed = datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC)
    outcome = json.loads(table.properties["asyncetl.outcome.lake"])
    assert (outcome["state"], outcome["error"]) == ("finished", None)
    assert committed <= datetime.fromisoformat(outcome["time"])
    url = f"http://127.0.0.1:{free_port()}"
    result = cli(tmp_path, "status", "lake.toml", "--url", url, "--json")
    assert (result.returncode, result.stderr) == (0, "")
    document = json.loads(result.stdout)
    assert 0 <= document.pop("age_s") < 60
    assert document == {
        "pipeline": "lake",
        "source": "jsonl",
        "position": {"path": "nums.jsonl", "offset": 18},
        "saved_at": committed.isoformat(),
        "last_run": outcome,
        "dead_letters": None,
        "endpoint": {"url": url, "status": None},
        "cdc": None,
    }
    # A failed run is recorded too, in the table the pipeline committed to before.
    (tmp_path / "nums.jsonl").write_text('{"n": 1}\n{"n": 2}\nnot json\n')
    failed = cli(tmp_path, "run", "lake.toml")
    assert failed.returncode == 1
    error = failed.stderr.splitlines()[-1].removeprefix("error: ")
    lines = cli(tmp_path, "status", "lake.toml", "--url", url).stdout.splitlines()
    last = json.loads(catalog.load_table("shop.numbers").properties["asyncetl.outcome.lake"])
    assert (last["state"], last["error"]) == ("failed", error)
    assert lines[1] == '  position      {"path":"nums.jsonl","offset":18}'
    assert lines[3] == f"  last run      failed at {when(last['time'])}: {error}"


def test_status_needs_only_the_variables_of_the_stores_it_reads(tmp_path: Path) -> None:
    project = files_project(tmp_path)
    assert cli(project, "run", "pipeline.toml").returncode == 0
    spec = (project / "pipeline.toml").read_text()
    (project / "vars.toml").write_text(
        spec.replace('path = "in.jsonl"', 'path = "${ASYNCETL_TEST_UNSET_SOURCE}"').replace(
            'path = "out.jsonl"', 'path = "${ASYNCETL_TEST_UNSET_SINK}"'
        )
    )
    url = f"http://127.0.0.1:{free_port()}"
    shown = cli(project, "status", "vars.toml", "--url", url, "--json")
    assert (shown.returncode, shown.stderr) == (0, "")
    document = json.loads(shown.stdout)
    assert (document["source"], document["position"], document["dead_letters"]) == (
        "jsonl",
        {"path": "in.jsonl", "offset": 33},
        2,
    )
    (project / "store.toml").write_text(
        spec.replace('path = "checkpoints.json"', 'path = "${ASYNCETL_TEST_UNSET_STORE}"')
    )
    refused = cli(project, "status", "store.toml", "--url", url)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.splitlines() == [
        "error: store.toml: checkpoints.path: environment variable ASYNCETL_TEST_UNSET_STORE "
        "is not set; set it or write ${ASYNCETL_TEST_UNSET_STORE:-default}"
    ]


def test_status_of_a_cdc_pipeline_needs_the_variables_of_its_source(tmp_path: Path) -> None:
    (tmp_path / "cdc.toml").write_text(
        '[pipeline]\nname = "cdc"\n'
        '[source]\ntype = "postgres_cdc"\ndsn = "${ASYNCETL_TEST_UNSET_DSN}"\n'
        'slot = "s"\npublication = "p"\ntables = ["items"]\n'
        '[sink]\ntype = "null"\n'
        '[checkpoints]\ntype = "json"\npath = "checkpoints.json"\n'
    )
    refused = cli(tmp_path, "status", "cdc.toml", "--url", f"http://127.0.0.1:{free_port()}")
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.splitlines() == [
        "error: cdc.toml: source.dsn: environment variable ASYNCETL_TEST_UNSET_DSN is not set; "
        "set it or write ${ASYNCETL_TEST_UNSET_DSN:-default}"
    ]
