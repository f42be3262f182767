"""Usage lines and hints name the command the user typed: ``asyncetl`` or ``python -m asyncetl``."""

from __future__ import annotations

import pytest

from asyncetl.cli import main


@pytest.mark.parametrize(
    ("argv0", "usage"),
    [
        ("/venv/bin/asyncetl", "usage: asyncetl [-h] [--version] COMMAND ...\n"),
        ("/repo/asyncetl/__main__.py", "usage: python -m asyncetl [-h] [--version] COMMAND ...\n"),
    ],
)
def test_usage_names_the_command_as_started(
    argv0: str, usage: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", [argv0, "--help"])
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith(usage)


def test_a_subcommand_usage_names_the_script(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/asyncetl"])
    with pytest.raises(SystemExit):
        main(["backfill", "status", "--help"])
    assert capsys.readouterr().out.startswith("usage: asyncetl backfill status ")
