"""json-server, the npm package users point API tools at first, as a real server for tests.

The binary comes from ``$ASYNCETL_TEST_JSON_SERVER`` when set; otherwise npm
installs json-server 0.17.4 once into ``~/.cache/asyncetl-tests`` (the npm
registry is reachable wherever the suite runs, as PyPI is), so the suite
passes as typed on a fresh machine with Node.js. `.ci/run` installs it ahead,
with more attempts, so a registry that is briefly away does not fail CI.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from tests.connectors.http.install_json_server import InstallFailed, install
from tests.ports import free_port, stop

_failed: list[str] = []  # why the install failed, so later tests fail at once with it


def binary() -> str:
    """The json-server executable: ``$ASYNCETL_TEST_JSON_SERVER``, or npm's install of it."""
    named = os.environ.get("ASYNCETL_TEST_JSON_SERVER")
    if named:
        return named
    assert not _failed, _failed[0]
    try:
        return str(install())
    except InstallFailed as failure:
        _failed.append(str(failure))
        raise AssertionError(str(failure)) from None


@contextmanager
def json_server(directory: Path, data: dict[str, object]) -> Iterator[str]:
    """json-server over ``data`` (written to ``directory/db.json``); yields its base URL."""
    database = directory / "db.json"
    database.write_bytes(orjson.dumps(data))
    port = free_port()
    command = [binary(), "--host", "127.0.0.1", "--port", str(port), str(database)]
    log = (directory / "json-server.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (directory / "json-server.log").read_text()
            try:
                with urllib.request.urlopen(base + "/db", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "json-server did not answer in 60 s"
                time.sleep(0.1)
        yield base
    finally:
        stop(process, 30)
        log.close()


def send(method: str, url: str, body: dict[str, object]) -> dict[str, object]:
    """A write to json-server, answered with the stored record."""
    request = urllib.request.Request(
        url, data=orjson.dumps(body), method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = orjson.loads(response.read())
    assert isinstance(answer, dict)
    return answer
