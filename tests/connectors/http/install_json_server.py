"""Install json-server with npm into the tests' cache, once, surviving a flaky registry.

Standard library only, so `.ci/run` can call it before tox builds an environment
(``python tests/connectors/http/install_json_server.py --attempts 6``) and the
tests can call it as a fallback on a fresh machine.

npm installs into a fresh directory beside the cache, which is renamed into place
only once the install succeeded: a cut-off install never passes for a finished one.
A lock keeps two test processes from installing at the same time. When every
attempt fails, the error carries each attempt's npm error lines (its stack traces left out).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VERSION = "0.17.4"
CACHE = Path.home() / ".cache" / "asyncetl-tests" / f"json-server-{VERSION}"
EXECUTABLE = CACHE / "node_modules" / ".bin" / "json-server"


class InstallFailed(RuntimeError):
    """npm could not install json-server in any attempt."""


def install(attempts: int = 3, pause: float = 10.0) -> Path:
    """The cached json-server executable, installed first when missing."""
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with (CACHE.parent / f".json-server-{VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if EXECUTABLE.exists():
            return EXECUTABLE
        npm = shutil.which("npm")
        if npm is None:
            raise InstallFailed(
                "json-server tests need Node.js and npm (Debian: apt-get install npm)"
            )
        failures: list[str] = []
        for attempt in range(1, attempts + 1):
            failure = _install_once(npm)
            if failure is None:
                return EXECUTABLE
            failures.append(f"attempt {attempt}: {failure}")
            if attempt < attempts:
                time.sleep(pause * attempt)
        raise InstallFailed(
            f"npm could not install json-server@{VERSION} in {attempts} attempts:\n"
            + "\n".join(failures)
        )


def _install_once(npm: str) -> str | None:
    """None once json-server is in the cache; otherwise why npm failed."""
    staging = Path(tempfile.mkdtemp(prefix=f".json-server-{VERSION}-", dir=CACHE.parent))
    try:
        done = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(staging),
                f"json-server@{VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        return "npm install did not finish in 300 s"
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        said = [line for line in (done.stderr or done.stdout).splitlines() if " at " not in line]
        return f"npm exited with {done.returncode}\n    " + "\n    ".join(said[:10])
    shutil.rmtree(CACHE, ignore_errors=True)
    os.rename(staging, CACHE)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--pause", type=float, default=10.0, help="seconds, growing per attempt")
    options = parser.parse_args()
    try:
        print(install(options.attempts, options.pause))
    except InstallFailed as failure:
        print(failure, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
