"""tune_gc: the command line's garbage-collector settings."""

from __future__ import annotations

import gc

import pytest

from asyncetl import tune_gc
from asyncetl.cli import main


def test_tune_gc_freezes_what_exists_and_collects_the_young_less_often() -> None:
    gc.set_threshold(700, 10, 10)
    survivor = [object()]
    assert any(o is survivor for o in gc.get_objects())
    tune_gc()
    assert gc.get_threshold() == (10_000, 10, 10)
    # Frozen: no collection looks at it again.
    assert not any(o is survivor for o in gc.get_objects())
    tune_gc(young_threshold=5_000)
    assert gc.get_threshold() == (5_000, 10, 10)


def test_run_tunes_the_collector(capsys: pytest.CaptureFixture[str]) -> None:
    gc.set_threshold(700, 10, 10)
    spec = f"{__name__}:make_pipeline"
    assert main(["run", spec]) == 0
    assert gc.get_threshold()[0] == 10_000
    assert "records_out    3" in capsys.readouterr().out


def make_pipeline() -> object:
    from asyncetl import ListSink, ListSource, Pipeline

    return Pipeline("gc", ListSource([1, 2, 3]), ListSink())
