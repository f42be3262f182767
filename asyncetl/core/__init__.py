"""The engine: batches, stages, checkpoints, dead letters, retries and errors.

Nothing here imports a connector or a client library (``tests/test_layering.py``
checks it). The public names are re-exported once, from :mod:`asyncetl`; the
public modules here (``interfaces``, ``batch``, ``errors``, ``pipeline``…) are
where they are defined. One run of a pipeline is made of private modules, one
concept each:

- ``_stages``: the runner that wires one run's stages in a task group;
- ``_batcher``: chunks into numbered batches, closed on size or age;
- ``_transforming``: a transform stage, with its workers;
- ``_committer``: the low watermark, the checkpoint, the upstream acknowledgement;
- ``_rejects``: a stage's failure policy and its dead letters;
- ``_stats``, ``_settings``, ``_handoff``: run statistics, run settings, stage hand-offs.
"""
