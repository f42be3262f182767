"""``flow status`` from the command line: the latest run, as ``flow --resume`` reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncetl.cli import main

FLOW = """
[flow]
name = "nightly"
state = "{state}"

[[steps]]
name = "extract"
run = "tests.flow.test_flow:nothing"

[[steps]]
name = "load"
run = "tests.cli.test_flow:broken"
depends_on = ["extract"]

[[steps]]
name = "audit"
run = "tests.flow.test_flow:nothing"
depends_on = ["load"]
"""


async def broken() -> None:
    """The flow's failing step."""
    raise RuntimeError("the load step is broken")


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    path = tmp_path / "nightly.toml"
    path.write_text(FLOW.format(state=tmp_path / "nightly.flow.json"))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_before_any_run_says_so(capsys: pytest.CaptureFixture[str], flow: Path) -> None:
    state = flow.parent / "nightly.flow.json"
    assert run(capsys, "flow", "status", str(flow)) == (
        0,
        f"flow nightly: no run recorded in {state}\n",
        "",
    )
    code, out, err = run(capsys, "flow", "status", str(flow), "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"flow": "nightly", "run_id": None, "started_at": None, "steps": {}}


def test_status_shows_each_step_of_the_latest_run(
    capsys: pytest.CaptureFixture[str], flow: Path
) -> None:
    code, _, _ = run(capsys, "flow", str(flow))
    assert code == 1
    code, out, err = run(capsys, "flow", "status", str(flow), "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["flow"] == "nightly"
    steps = {
        name: (step["status"], step["attempts"], step["error"])
        for name, step in document["steps"].items()
    }
    assert steps == {
        "extract": ("succeeded", 1, None),
        "load": ("failed", 1, "RuntimeError: the load step is broken"),
        "audit": ("skipped", 0, "not run: dependency 'load' failed"),
    }
    code, out, _ = run(capsys, "flow", "status", str(flow))
    assert code == 0
    assert out.startswith(f"flow nightly, run {document['run_id']} started ")
    assert "│ load    │ failed    │ 1        │" in out
    assert "│ audit   │ skipped   │ 0        │" in out


def test_status_reads_the_state_file_resume_would(
    capsys: pytest.CaptureFixture[str], flow: Path
) -> None:
    elsewhere = flow.parent / "elsewhere.json"
    assert run(capsys, "flow", str(flow), "--step", "extract", "--state", str(elsewhere))[0] == 0
    _, out, _ = run(capsys, "flow", "status", str(flow), "--json", "--state", str(elsewhere))
    assert {name: step["status"] for name, step in json.loads(out)["steps"].items()} == {
        "extract": "succeeded"
    }
    _, out, _ = run(capsys, "flow", "status", str(flow), "--json")
    assert json.loads(out)["run_id"] is None
