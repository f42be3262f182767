"""Logging setup: console and JSON lines, levels, and nothing configured on import."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

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


LOGIN = '''
from asyncetl import Chunk, Source


class Login(Source[dict]):
    """Fails to open while its frame holds the DSN, password and all."""

    def __init__(self, *, dsn: str) -> None:
        self.name, self.dsn = "login", dsn

    async def open(self):
        dsn = self.dsn
        raise RuntimeError(f"login refused for {dsn}")

    async def read(self, after, *, max_chunk):
        yield Chunk([], None)
'''


@pytest.mark.parametrize("format", ["json", "console"])
def test_debug_tracebacks_show_no_local_variables_nor_url_passwords(
    tmp_path: Path, format: str
) -> None:
    (tmp_path / "login.py").write_text(LOGIN)
    (tmp_path / "login.toml").write_text(
        '[pipeline]\nname = "login"\n\n[source]\ntype = "login:Login"\n'
        'dsn = "postgresql://etl:hunter2-s3cret@127.0.0.1/app"\n\n[sink]\ntype = "null"\n'
    )
    command = ["run", "login.toml", "--log-level", "debug", "--log-format", format]
    result = subprocess.run(
        [sys.executable, "-m", "asyncetl", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    *logs, last = result.stderr.splitlines()
    assert (result.returncode, last) == (
        1,
        "error: RuntimeError: login refused for postgresql://etl:***@127.0.0.1/app",
    )
    if format == "json":
        (frame,) = [
            f for f in json.loads(logs[-1])["exception"][0]["frames"] if f["name"] == "open"
        ]
        assert frame == {"filename": str(tmp_path / "login.py"), "lineno": 13, "name": "open"}
    else:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(logs))  # rich colours even in a pipe
        assert "Traceback (most recent call last)" in plain
        assert "RuntimeError: login refused for postgresql://etl:***@127.0.0.1/app" in plain
        assert "locals" not in plain
    assert "hunter2" not in result.stderr + result.stdout
