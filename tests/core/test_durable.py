"""Atomic file replacement: the old file or the new one, and nothing left beside them."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncetl.core.durable import fsync_directory, write_atomically


def test_write_atomically_creates_then_replaces_the_file_and_leaves_nothing_else(
    tmp_path: Path,
) -> None:
    target = tmp_path / "state.json"

    write_atomically(target, b"first")
    write_atomically(str(target), b"second")

    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # a directory cannot be replaced by a file
    (target / "inside").write_bytes(b"old")

    with pytest.raises(IsADirectoryError):
        write_atomically(target, b"new")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (target / "inside").read_bytes() == b"old"


def test_a_missing_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "missing" / "state.json", b"x")
    with pytest.raises(FileNotFoundError):
        fsync_directory(tmp_path / "missing")
