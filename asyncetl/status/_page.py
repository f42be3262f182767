"""The live page: one self-contained HTML document (no build step, nothing fetched but JSON).

The document is ``page.html`` beside this module, read once on import.

It draws the pipeline as a graph of its stages, with records per second on each
edge and the queue between two stages as a fill bar, the progress of each part
with its ETA, the source's lag, a throughput sparkline and the latest dead
letters and retries. Once a second it reads ``/status.json`` and redraws, without
reloading. Every value reaches the page through ``textContent`` or an SVG
attribute, never as HTML, so a stage name or an error cannot inject markup.
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["PAGE"]

PAGE = files("asyncetl.status").joinpath("page.html").read_text(encoding="utf-8")
