"""Logging setup: console and JSON lines, levels, and nothing configured on import."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import structlog

from asyncetl import ConfigError
from asyncetl.status import configure_logging


def test_configure_logging_json_and_levels(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "warning")
    log = structlog.get_logger("asyncetl.test")
    log.info("hidden")
    log.warning("shown", position={"lsn": "0/16"}, count=3)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert {k: event[k] for k in ("event", "level", "position", "count")} == {
        "event": "shown",
        "level": "warning",
        "position": {"lsn": "0/16"},
        "count": 3,
    }
    assert event["timestamp"].endswith("Z")


def test_configure_logging_console(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("console", "DEBUG")
    structlog.get_logger().debug("details", n=1)
    assert re.search(r"\[debug\s*\] details\s+n=1\n$", capsys.readouterr().err)


def test_configure_logging_rejects_unknown_settings() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^unknown log level 'loud'; use one of debug, info, "
        r"warning, error, critical$",
    ):
        configure_logging("json", "loud")
    with pytest.raises(ConfigError, match=r"^unknown log format 'xml'; use 'console' or 'json'$"):
        configure_logging("xml", "info")  # type: ignore[arg-type]


def test_importing_asyncetl_configures_nothing() -> None:
    code = textwrap.dedent("""
        import structlog
        before = structlog.get_config()
        import asyncetl, asyncetl.cli, asyncetl.spec, asyncetl.core.replay, asyncetl.status._logs
        assert structlog.get_config() == before
    """)
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ}, timeout=30)
