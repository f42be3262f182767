"""``validate`` and ``run`` refuse what a run could not use: exit 2, one line naming it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from asyncetl.cli import main
from tests.cli.helpers import cli

SPEC = """
[pipeline]
name = "numbers"
{setting}

[source]
type = "jsonl"
path = "in.jsonl"
{source_setting}

[sink]
type = "null"
"""


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n')
    return tmp_path


def write(here: Path, setting: str = "", source_setting: str = "") -> str:
    (here / "s.toml").write_text(SPEC.format(setting=setting, source_setting=source_setting))
    return "s.toml"


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "stop_when_idle = -1.0",
            "pipeline.stop_when_idle: must be a positive number of seconds, not -1.0",
        ),
        (
            "stop_when_idle = nan",
            "pipeline.stop_when_idle: must be a positive number of seconds, not nan",
        ),
        (
            "summary_interval = -1.0",
            "pipeline.summary_interval: must be a positive number of seconds, not -1.0",
        ),
        (
            "summary_interval = nan",
            "pipeline.summary_interval: must be a positive number of seconds, not nan",
        ),
        (
            "summary_interval = 0",
            "pipeline.summary_interval: must be a positive number of seconds, not 0",
        ),
    ],
)
def test_unusable_pipeline_seconds_exit_2_naming_file_and_key(
    capsys: pytest.CaptureFixture[str], here: Path, command: str, setting: str, message: str
) -> None:
    code = main([command, write(here, setting)])
    assert (code, capsys.readouterr()) == (2, ("", f"error: s.toml: {message}\n"))


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_block_size_no_read_could_use_exits_2(
    capsys: pytest.CaptureFixture[str], here: Path, command: str
) -> None:
    code = main([command, write(here, source_setting="block_size = 99999999999999999999")])
    assert (code, capsys.readouterr()) == (
        2,
        (
            "",
            "error: s.toml: source.block_size: must be a number of bytes from 1 to "
            "1073741824, not 99999999999999999999\n",
        ),
    )


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_spec_nested_5000_deep_exits_2_naming_the_file(
    capsys: pytest.CaptureFixture[str], here: Path, command: str
) -> None:
    spec = write(here, "deep = " + "[" * 5000 + "]" * 5000)
    code = main([command, spec])
    assert (code, capsys.readouterr()) == (
        2,
        ("", "error: s.toml: the spec file nests arrays or inline tables too deeply to read\n"),
    )


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--status-port", "99999", "expected a port from 0 to 65535, got '99999'"),
        ("--status-port", "-1", "expected a port from 0 to 65535, got '-1'"),
        ("--stop-when-idle", "inf", "expected a positive number of seconds, got 'inf'"),
        ("--stop-when-idle", "nan", "expected a positive number of seconds, got 'nan'"),
        ("--stop-when-idle", "-1", "expected a positive number of seconds, got '-1'"),
    ],
)
def test_run_options_out_of_range_exit_2_naming_the_flag(
    here: Path, option: str, value: str, problem: str
) -> None:
    result = cli(here, "run", write(here), option, value)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == (
        f"python -m asyncetl run: error: argument {option}: {problem}"
    )


MISSING_EXTRA_SINKS = {
    "kafka": ('type = "kafka"\nbootstrap_servers = "127.0.0.1:9092"\ntopic = "t"', "aiokafka"),
    "duckdb": ('type = "duckdb"\npath = "x.duckdb"\ntable = "t"', "duckdb"),
    "parquet": ('type = "parquet"\npath = "lake"', "pyarrow"),
    "iceberg": ('type = "iceberg"\nwarehouse = "wh"\ntable = "a.b"', "pyiceberg"),
}


@pytest.mark.parametrize("extra", sorted(MISSING_EXTRA_SINKS))
def test_a_connector_whose_extra_is_missing_names_the_extra_to_install(
    here: Path,
    extra: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table, package = MISSING_EXTRA_SINKS[extra]
    # As on a machine without the extra: the client library cannot be imported.
    for module in [package, *(m for m in sys.modules if m.startswith(f"{package}."))]:
        monkeypatch.setitem(sys.modules, module, None)
    for module in [m for m in sys.modules if m.startswith(f"asyncetl.connectors.{extra}")]:
        monkeypatch.delitem(sys.modules, module)
    spec = SPEC.format(setting="", source_setting="").replace('type = "null"', table)
    (here / "s.toml").write_text(spec)
    assert main(["validate", "s.toml"]) == 2
    assert capsys.readouterr().err == (
        f"error: s.toml: sink.type: type '{extra}' needs the package '{package}', which is "
        f"not installed; install it with: pip install 'asyncetl[{extra}]'\n"
    )
