"""Numeric settings in a spec: a value no run could use is refused when the spec is read.

A setting that passes ``validate`` must not fail the run later with a bare
ValueError or OverflowError, nor make it spin: NaN, infinities, zero or negative
seconds and impossible block sizes are one ``<file>: <key>: …`` message each.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncetl import ConfigError
from asyncetl.spec import build_pipeline

SECONDS = ("max_batch_age", "grace_period", "summary_interval", "stop_when_idle")
SPEC = """
[pipeline]
name = "numbers"
{setting}

[source]
type = "jsonl"
path = "in.jsonl"
{source_setting}

[sink]
type = "null"
"""
# deadline=None: the first example of a connector imports its client library.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


def toml_number(value: float) -> str:
    """``value`` as TOML writes it: ``nan``, ``inf`` and ``-inf`` are TOML floats too."""
    return repr(value)


def write(path: Path, setting: str = "", source_setting: str = "") -> Path:
    path.write_text(SPEC.format(setting=setting, source_setting=source_setting))
    return path


unusable_seconds = st.one_of(
    st.floats(max_value=0.0),
    st.integers(max_value=0),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)


@fixture_ok
@given(key=st.sampled_from(SECONDS), value=unusable_seconds)
def test_seconds_that_are_not_positive_and_finite_are_refused(
    tmp_path: Path, key: str, value: float
) -> None:
    spec = write(tmp_path / "s.toml", f"{key} = {toml_number(value)}")
    with pytest.raises(ConfigError) as caught:
        build_pipeline(spec)
    assert str(caught.value) == (
        f"{spec}: pipeline.{key}: must be a positive number of seconds, not {value!r}"
    )


@fixture_ok
@given(
    key=st.sampled_from(SECONDS),
    value=st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
)
def test_positive_finite_seconds_are_kept(tmp_path: Path, key: str, value: float) -> None:
    pipeline = build_pipeline(write(tmp_path / "s.toml", f"{key} = {toml_number(value)}"))
    assert getattr(pipeline, key) == value


@fixture_ok
@given(
    source_type=st.sampled_from(["jsonl", "csv"]),
    size=st.one_of(st.integers(max_value=0), st.integers(min_value=(1 << 30) + 1)),
)
def test_a_files_source_refuses_a_block_size_it_could_not_read(
    tmp_path: Path, source_type: str, size: int
) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(
        SPEC.format(setting="", source_setting=f"block_size = {size}").replace(
            'type = "jsonl"', f'type = "{source_type}"'
        )
    )
    with pytest.raises(ConfigError) as caught:
        build_pipeline(spec)
    assert str(caught.value) == (
        f"{spec}: source.block_size: must be a number of bytes from 1 to 1073741824, not {size}"
    )


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-0.5"])
def test_a_files_source_refuses_a_poll_interval_it_could_not_sleep(
    tmp_path: Path, value: str
) -> None:
    spec = write(tmp_path / "s.toml", source_setting=f"follow = true\npoll_interval = {value}")
    with pytest.raises(ConfigError) as caught:
        build_pipeline(spec)
    shown = repr(float(value)) if "." in value or value.isalpha() else value
    assert str(caught.value) == (
        f"{spec}: source.poll_interval: must be a positive number of seconds, not {shown}"
    )


@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ("{a = ", "}")])
def test_a_spec_nested_too_deeply_is_one_message_naming_the_file(
    tmp_path: Path, opening: str, closing: str
) -> None:
    spec = write(tmp_path / "s.toml", "deep = " + opening * 5000 + closing * 5000)
    with pytest.raises(ConfigError) as caught:
        build_pipeline(spec)
    assert str(caught.value) == (
        f"{spec}: the spec file nests arrays or inline tables too deeply to read"
    )


#: (type, the keys the table needs, the setting, the problem a bad value is reported as;
#: ``{value}`` stands for the value).
CONNECTOR_SECONDS = [
    (
        "list",
        "records = []",
        "delay",
        "delay: must be a finite number of seconds, not negative, not {value}",
    ),
    (
        "postgres",
        'dsn = "postgresql://u@127.0.0.1/db"\ntable = "t"',
        "lag",
        ": chunk_size must be positive, lag and poll finite and not negative",
    ),
    (
        "postgres",
        'dsn = "postgresql://u@127.0.0.1/db"\ntable = "t"',
        "poll",
        ": chunk_size must be positive, lag and poll finite and not negative",
    ),
    (
        "postgres",
        'dsn = "postgresql://u@127.0.0.1/db"\ntable = "t"',
        "retry_max_time",
        "retry: max_time must be a positive number of seconds, not {value}",
    ),
    (
        "redis",
        'url = "redis://127.0.0.1"\nstream = "s"\ngroup = "g"',
        "retry_max_time",
        "retry_max_time: must be a positive number of seconds, not {value}",
    ),
    (
        "nats",
        'servers = "nats://127.0.0.1:4222"\nstream = "s"\nsubject = "x"\ndurable = "d"',
        "fetch_timeout",
        "fetch_timeout: must be a positive number of seconds, not {value}",
    ),
    (
        "nats",
        'servers = "nats://127.0.0.1:4222"\nstream = "s"\nsubject = "x"\ndurable = "d"',
        "retry_max_time",
        "retry_max_time: must be a positive number of seconds, not {value}",
    ),
]


@fixture_ok
@given(
    case=st.sampled_from(CONNECTOR_SECONDS),
    value=st.one_of(st.floats(max_value=-1e-9), st.sampled_from([math.nan, math.inf, -math.inf])),
)
def test_connector_seconds_that_no_wait_could_use_are_refused(
    tmp_path: Path, case: tuple[str, str, str, str], value: float
) -> None:
    type_name, needed, key, problem = case
    spec = tmp_path / "s.toml"
    spec.write_text(
        f'[pipeline]\nname = "n"\n[source]\ntype = "{type_name}"\n{needed}\n'
        f'{key} = {toml_number(value)}\n[sink]\ntype = "null"\n'
    )
    with pytest.raises(ConfigError) as caught:
        build_pipeline(spec)
    separator = "" if problem.startswith(":") else "."
    assert str(caught.value) == (f"{spec}: source{separator}{problem.format(value=repr(value))}")
