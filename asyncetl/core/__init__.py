"""The engine: batches, stages, checkpoints, dead letters, retries and errors.

Nothing here imports a connector or a client library (``tests/test_layering.py``
checks it). The public names are re-exported once, from :mod:`asyncetl`; the
modules here are where they are defined.
"""
