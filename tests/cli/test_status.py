"""``status SPEC``: the committed position, dead letters and a running pipeline's live figures."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from tests.cli.helpers import FILES_SPEC, HELPERS, INPUT, cli, spawn

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_status_of_a_stopped_pipeline_shows_its_position_and_dead_letters(tmp_path: Path) -> None:
    project = files_project(tmp_path)
    assert cli(project, "run", "pipeline.toml").returncode == 0
    url = f"http://127.0.0.1:{free_port()}"
    result = cli(project, "status", "pipeline.toml", "--url", url)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "pipeline files (source jsonl)",
        '  position      {"path":"in.jsonl","offset":33}',
        "  dead_letters  2",
        f"  running       not answering at {url}",
    ]
    result = cli(project, "status", "pipeline.toml", "--url", url, "--json")
    assert json.loads(result.stdout) == {
        "pipeline": "files",
        "source": "jsonl",
        "position": {"path": "in.jsonl", "offset": 33},
        "dead_letters": 2,
        "endpoint": {"url": url, "status": None},
        "cdc": None,
    }


def test_status_of_a_running_pipeline_adds_its_live_figures(tmp_path: Path) -> None:
    project = files_project(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = spawn(project, "run", "ticking:pipeline", "--status-port", str(port))
    try:
        deadline = time.monotonic() + 15
        while True:
            lines = cli(project, "status", "ticking:pipeline", "--url", url).stdout.splitlines()
            committed = len(lines) > 6 and lines[6] != "  last commit   none yet"
            if committed or time.monotonic() > deadline:
                break
        assert lines[:4] == [
            "pipeline ticking (source ticker)",
            "  position      none",
            "  dead_letters  no store",
            f"  running       running at {url}: ready",
        ]
        assert lines[4].startswith("  records/s     ")
        assert lines[5].startswith("  records       in ")
        assert lines[6].startswith("  last commit   ") and lines[6].endswith(" s ago")
    finally:
        process.terminate()
        process.communicate(timeout=30)
