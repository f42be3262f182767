"""asyncetl's loggers: the standard library's logging by default, structlog once configured."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import structlog
from structlog.testing import capture_logs

from asyncetl import ListSink, ListSource, Pipeline
from asyncetl.core.logs import get_logger

pytestmark = pytest.mark.anyio


async def test_an_embedded_run_logs_to_stdlib_logging_and_prints_nothing(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncetl")
    sink: ListSink[dict[str, int]] = ListSink()
    await Pipeline("embedded", ListSource([{"n": 1}, {"n": 2}]), sink).run()
    assert capsys.readouterr() == ("", "")
    events = [(r.name, r.levelname, r.getMessage().split(" ")[0]) for r in caplog.records]
    assert events == [("asyncetl", "INFO", "starting"), ("asyncetl", "INFO", "finished")]
    finished = caplog.records[-1]
    assert finished.getMessage().startswith("finished pipeline='embedded' position=2 ")
    assert finished.asyncetl["records_out"] == 2  # type: ignore[attr-defined]


def test_levels_below_the_stdlib_loggers_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="asyncetl.test")
    log = get_logger("asyncetl.test").bind(stage="sink")
    log.info("hidden")
    log.warning("shown", n=1)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "shown stage='sink' n=1")
    ]
    assert caplog.records[0].funcName == "test_levels_below_the_stdlib_loggers_are_skipped"


def test_an_exception_reaches_stdlib_as_exc_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncetl.test")
    error = RuntimeError("boom")
    get_logger("asyncetl.test").debug("failed", exc_info=error)
    (record,) = caplog.records
    assert (record.getMessage(), record.exc_info and record.exc_info[1]) == ("failed", error)


def test_once_structlog_is_configured_events_go_through_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = get_logger("asyncetl.test").bind(stage="sink")  # made before the configuration
    structlog.configure(processors=[structlog.processors.KeyValueRenderer()])
    with capture_logs() as captured:
        log.warning("shown", n=1)
    assert captured == [{"event": "shown", "stage": "sink", "n": 1, "log_level": "warning"}]
    assert caplog.records == []


def test_url_passwords_in_values_never_reach_stdlib(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="asyncetl.test")
    get_logger("asyncetl.test").info("connecting", to={"url": "redis://etl:s3cret@h:6379/0"})
    (record,) = caplog.records
    assert record.getMessage() == "connecting to={'url': 'redis://etl:***@h:6379/0'}"
    assert record.asyncetl == {"to": {"url": "redis://etl:***@h:6379/0"}}  # type: ignore[attr-defined]


def test_an_embedded_run_never_imports_structlog_or_rich() -> None:
    script = (
        "import logging, sys\n"
        "import anyio\n"
        "from asyncetl import ListSink, ListSource, Pipeline\n"
        "logging.basicConfig(level=logging.INFO, format='%(name)s %(message)s', stream=sys.stdout)\n"
        "anyio.run(Pipeline('lean', ListSource([{'n': 1}]), ListSink()).run)\n"
        "print(sorted(m for m in ('structlog', 'rich') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    lines = done.stdout.splitlines()
    assert [line.split(" ")[:2] for line in lines[:-1]] == [
        ["asyncetl", "starting"],
        ["asyncetl", "finished"],
    ]
    assert lines[-1] == "[]"
