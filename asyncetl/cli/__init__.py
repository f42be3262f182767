"""``python -m asyncetl``: a thin shell over the public API that embedders use.

Each command builds what it needs through :mod:`asyncetl.spec` and runs it with
the same classes an application would; this package adds argument parsing,
signals, exit codes and what is printed.
"""

from asyncetl.cli._main import main as main

__all__ = ["main"]
