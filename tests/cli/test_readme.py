"""The README's command table names every option each command's ``--help`` shows, and no other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asyncetl.cli import main

README = Path(__file__).parents[2] / "README.md"
COMMANDS = [
    "run",
    "status",
    "validate",
    "dlq list",
    "dlq replay",
    "dlq delete",
    "dlq purge",
    "checkpoint show",
    "checkpoint reset",
    "cdc status",
    "cdc drop",
    "backfill",
    "backfill status",
    "flow",
    "flow status",
]
#: Options every command that reads a spec takes; the README says so once, below the table.
COMMON = {"--help", "--env-file", "--log-format", "--log-level"}
OPTION = re.compile(r"--[a-z][a-z-]*")


def readme_forms(command: str) -> list[str]:
    """Each ``command SPEC [...]`` form the README's command table shows for ``command``."""
    forms = []
    for line in README.read_text().splitlines():
        if not line.startswith("| `python -m asyncetl "):
            continue
        first_cell = line.split("` |")[0]
        for form in first_cell.split("` / `"):
            words = form.strip("|` ").removeprefix("python -m asyncetl ").split()
            size = len(command.split())
            if words[:size] == command.split() and words[size : size + 1] in (["SPEC"], ["FLOW"]):
                forms.append(" ".join(words))
    return forms


@pytest.mark.parametrize("command", COMMANDS)
def test_the_readme_shows_the_options_of_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command.split(), "--help"])
    assert exit_.value.code == 0
    usage = capsys.readouterr().out.split("\n\n")[0]
    forms = readme_forms(command)
    assert forms, f"the README's command table has no row for {command!r}"
    documented = {option for form in forms for option in OPTION.findall(form)}
    assert documented == set(OPTION.findall(usage)) - COMMON
