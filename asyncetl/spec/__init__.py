"""Spec files: pipelines, backfills and flows built from TOML, naming connectors by ``type``.

This is the one layer that names connectors: a spec's ``type = "postgres"`` is
looked up in :data:`REGISTRY` and imported only then. What it builds are the
same public objects an embedding application makes by hand, so the command line
(:mod:`asyncetl.cli`) and an application run the very same pipeline.
"""

from asyncetl.spec._secrets import read_env_file as read_env_file
from asyncetl.spec._secrets import redact as redact
from asyncetl.spec._secrets import use_env_file as use_env_file
from asyncetl.spec.backfill import DEFAULT_STORE as DEFAULT_STORE
from asyncetl.spec.backfill import BackfillSpec as BackfillSpec
from asyncetl.spec.backfill import PipelineJob as PipelineJob
from asyncetl.spec.backfill import backfill_store_at as backfill_store_at
from asyncetl.spec.backfill import load_backfill_spec as load_backfill_spec
from asyncetl.spec.check import CheckReport as CheckReport
from asyncetl.spec.check import check_pipeline as check_pipeline
from asyncetl.spec.flow import FlowSpec as FlowSpec
from asyncetl.spec.flow import PipelineStep as PipelineStep
from asyncetl.spec.flow import load_flow as load_flow
from asyncetl.spec.pipeline import REGISTRY as REGISTRY
from asyncetl.spec.pipeline import LoggingSettings as LoggingSettings
from asyncetl.spec.pipeline import build_pipeline as build_pipeline
from asyncetl.spec.pipeline import load_pipeline as load_pipeline
from asyncetl.spec.pipeline import logging_settings as logging_settings
from asyncetl.spec.pipeline import register as register

__all__ = [
    "DEFAULT_STORE",
    "REGISTRY",
    "BackfillSpec",
    "CheckReport",
    "FlowSpec",
    "LoggingSettings",
    "PipelineJob",
    "PipelineStep",
    "backfill_store_at",
    "build_pipeline",
    "check_pipeline",
    "load_backfill_spec",
    "load_flow",
    "load_pipeline",
    "logging_settings",
    "read_env_file",
    "redact",
    "register",
    "use_env_file",
]
