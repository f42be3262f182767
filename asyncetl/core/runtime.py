"""Process-wide settings that suit a long-running ETL process.

They belong to whoever owns the process: the command line applies them; an
application that embeds asyncetl decides for itself whether to call
:func:`tune_gc`.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]

#: Container allocations between two young-generation collections (CPython's default: 700).
YOUNG_THRESHOLD = 10_000


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
