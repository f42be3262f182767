"""What the file connectors' ``check()`` asks of the file system, without touching a file.

A source's file must exist and be readable even with ``follow`` (reading starts by
opening it); a sink's or store's file may be missing, as long as its directory
would let it be created, and must be writable when it exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio.to_thread

from asyncetl.core.interfaces import Problem

__all__ = ["readable", "writable"]


async def readable(path: str, setting: str = "path") -> list[Problem]:
    """The problem, if any, with reading ``path``."""
    return await anyio.to_thread.run_sync(_readable, path, setting)


async def writable(path: str, setting: str = "path") -> list[Problem]:
    """The problem, if any, with appending to ``path``, or creating it in its directory."""
    return await anyio.to_thread.run_sync(_writable, path, setting)


def _readable(path: str, setting: str) -> list[Problem]:
    if not os.path.exists(path):
        return [Problem(setting, f"file {path} does not exist")]
    if os.path.isdir(path):
        return [Problem(setting, f"{path} is a directory, not a file")]
    if not os.access(path, os.R_OK):
        return [Problem(setting, f"file {path} is not readable")]
    return []


def _writable(path: str, setting: str) -> list[Problem]:
    if os.path.isdir(path):
        return [Problem(setting, f"{path} is a directory, not a file")]
    if os.path.exists(path):
        if os.access(path, os.W_OK):
            return []
        return [Problem(setting, f"file {path} is not writable")]
    directory = Path(path).parent
    if not directory.is_dir():
        return [Problem(setting, f"directory {directory} of {path} does not exist")]
    if not os.access(directory, os.W_OK | os.X_OK):
        return [
            Problem(setting, f"directory {directory} is not writable, so {path} cannot be created")
        ]
    return []
