"""Process-wide settings that suit a long-running ETL process.

They belong to whoever owns the process: the command line applies
:func:`tune_gc` for good; an application that embeds asyncetl decides for
itself whether to call it. Without it, each pipeline run eases the collector
for as long as it runs (:func:`collector_eased`) and gives the settings back
when it ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_eased", "tune_gc"]

#: Container allocations between two young-generation collections (CPython's default: 700).
#: The count is of containers not yet freed, so it is crossed when the records in flight
#: grow by this many: above what a pipeline holds at once (a CDC run with batches of
#: 5,000 changes, three containers each, holds up to about 90,000), a run collects when
#: garbage with cycles has piled up, not each time a batch is made. Below it, each
#: collection walks records still in flight, and moves them to the older generation to
#: be walked again there (10,000 cost a CDC drain of 240k changes 0.11 s; this, 0.005 s).
YOUNG_THRESHOLD = 100_000


def tune_gc(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Make the cyclic garbage collector cheaper for streams of short-lived records.

    Records are mostly dicts and tuples that live for one batch and form no
    cycles, yet each allocation counts towards the next collection, and every
    full collection walks every object the program holds (modules, codecs,
    caches). This moves everything allocated so far out of the collector's
    sight (``gc.freeze()``) and collects the young generation every
    ``young_threshold`` allocations instead of 700. Reference counting still
    frees records as soon as they are dropped; only cycles wait a little longer.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)


class _Eased:
    """The runs under way that eased the collector, and what to give back after the last."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs = 0
        #: The young threshold before the first run raised it to YOUNG_THRESHOLD
        #: (``None``: left as it was).
        self.young_before: int | None = None


_EASED = _Eased()


@contextmanager
def collector_eased() -> Iterator[None]:
    """While a run is under way, :func:`tune_gc`'s settings, given back when it ends.

    What exists when the first concurrent run starts (modules, clients, the
    application's own objects) leaves the collector's sight until the last one
    ends, and the young generation is collected every :data:`YOUNG_THRESHOLD`
    allocations: a run's full collections then walk its records only, not the
    whole program each time. Nothing is collected first (a full collection on
    every start is dear where the heap is big): cyclic garbage left from before
    the run waits for its end. Nothing is changed where the process owner set
    the collector itself: disabled, or anything frozen (:func:`tune_gc`, or an
    application's own ``gc.freeze()`` before it forks).
    """
    eased = _EASED
    with eased.lock:
        took_part = eased.runs > 0 or (gc.isenabled() and gc.get_freeze_count() == 0)
        if took_part:
            if eased.runs == 0:
                _ease(eased)
            eased.runs += 1
    try:
        yield
    finally:
        if took_part:
            with eased.lock:
                eased.runs -= 1
                if eased.runs == 0:
                    _give_back(eased)


def _ease(eased: _Eased) -> None:
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
        eased.young_before = young


def _give_back(eased: _Eased) -> None:
    gc.unfreeze()
    if eased.young_before is not None:
        young, middle, old = gc.get_threshold()
        if young == YOUNG_THRESHOLD:  # else someone set it meanwhile: theirs stands
            gc.set_threshold(eased.young_before, middle, old)
        eased.young_before = None
