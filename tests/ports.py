"""Ports and processes of the private servers the tests start (Tansu, SeaweedFS, json-server…)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports nothing listens on (all bound at once, then released)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def free_port() -> int:
    """A port nothing listens on."""
    return free_ports(1)[0]


def wait_for_port(
    port: int,
    process: subprocess.Popen[bytes],
    what: str,
    *,
    seconds: float,
    log: Callable[[], str] = lambda: "",
) -> None:
    """Return once ``process`` (called ``what``) accepts connections on ``port``.

    :raises RuntimeError: when it exits first (with ``log()``) or does not listen in time.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}{log()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise RuntimeError(f"{what} did not listen on port {port} within {seconds:g} s")


def stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Terminate ``process``; kill it when it has not ended within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
