"""Fixtures of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import FILES_SPEC, HELPERS, INPUT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "helpers.py").write_text(HELPERS)
    (tmp_path / "in.jsonl").write_text(INPUT)
    (tmp_path / "files.toml").write_text(FILES_SPEC)
    return tmp_path
