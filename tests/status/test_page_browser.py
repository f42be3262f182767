"""The live page in a real headless Chromium: it loads cleanly and its figures follow the run.

Chromium and its driver are Debian's: when they are missing, the tests install
them with apt-get (as the CDC tests bring their own PostgreSQL cluster), so the
suite passes as typed on a fresh machine. Selenium drives them from a worker thread while the pipeline and the status
server run on the test's event loop.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from asyncetl import ListSink, ListSource, MemoryDeadLetterStore, Pipeline, Transform
from asyncetl.status import serve_status

pytestmark = pytest.mark.anyio


def installed(command: str) -> str:
    """The path of Debian's ``command``, installing Chromium and its driver when missing."""
    found = shutil.which(command)
    if found is None:
        for step in (["update", "-qq"], ["install", "-y", "-qq", "chromium", "chromium-driver"]):
            subprocess.run(["apt-get", *step], check=True, capture_output=True, timeout=600)
        found = shutil.which(command)
    assert found is not None, f"{command} is not installed and apt-get did not install it"
    return found


def not_a_multiple_of_7(record: int) -> int:
    if record % 7:
        return record
    raise ValueError(f"record {record} is a multiple of 7")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = installed("chromium")
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Chromium puts its profile lock in $TMPDIR (org.chromium.Chromium.*) and leaves it
    # there: a directory of the test's own, removed afterwards.
    with tempfile.TemporaryDirectory(prefix="asyncetl_chromium_") as directory:
        env = {**os.environ, "TMPDIR": directory}
        service = Service(installed("chromedriver"), env=env)
        driver = webdriver.Chrome(options=options, service=service)
        try:
            yield driver
        finally:
            driver.quit()


def text(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


async def until(check: Callable[[], bool], seconds: float = 15.0) -> None:
    with anyio.fail_after(seconds):
        while not await anyio.to_thread.run_sync(check):
            await anyio.sleep(0.1)


async def test_the_page_shows_the_running_pipeline_and_follows_it(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    sink: ListSink[Any] = ListSink(name="warehouse")
    pipeline = Pipeline(
        "orders <b>copy</b>",
        ListSource(range(600), chunk_size=20, delay=0.12, name="orders_table"),
        sink,
        [Transform(not_a_multiple_of_7, name="validate", on_error="dead_letter")],
        dead_letters=MemoryDeadLetterStore(),
        max_batch_size=20,
    )
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_status(pipeline, port=0, task_status=task_status)
        )
        tg.start_soon(pipeline.run)
        await anyio.to_thread.run_sync(browser.get, f"http://127.0.0.1:{port}/")
        # The name is shown as text, not markup.
        await until(lambda: text(browser, "title") == "pipeline orders <b>copy</b>")
        await until(lambda: text(browser, "records-out") not in ("–", "0"))
        first = int(text(browser, "records-out").replace(",", ""))
        # The numbers move without a reload, and the graph and progress fill in.
        await until(lambda: int(text(browser, "records-out").replace(",", "")) > first)
        await until(lambda: "rec/s" in text(browser, "graph") and "/2" in text(browser, "graph"))
        await until(lambda: "orders_table" in text(browser, "graph"))
        await until(lambda: text(browser, "progress").startswith("all"))
        await until(lambda: "multiple of 7" in text(browser, "letters"))
        await until(lambda: "validate" in text(browser, "retries"))
        await until(lambda: text(browser, "spark-label").startswith("last "), seconds=10)
        screenshot = os.environ.get("ASYNCETL_SCREENSHOT") or str(tmp_path / "running.png")
        await anyio.to_thread.run_sync(browser.save_screenshot, screenshot)
        assert Path(screenshot).stat().st_size > 10_000
        # Once the run ends, the page shows its final figures exactly.
        with anyio.fail_after(30):
            while pipeline.state != "idle":
                await anyio.sleep(0.1)
        await until(lambda: text(browser, "state") == "idle")
        await until(lambda: text(browser, "records-out") == "514")
        assert text(browser, "records-in") == "600"
        assert text(browser, "dead-lettered") == "86"
        assert "600 600 100.0" in text(browser, "progress")
        tg.cancel_scope.cancel()
    assert len(sink.records) == 514
    logs: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    severe = [e for e in logs if e["level"] == "SEVERE"]
    assert severe == []
