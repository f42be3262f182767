"""The checks connectors run on their constructor settings: what passes, and each refusal's text."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from asyncetl import ConfigError
from asyncetl.core.retry import RetryPolicy
from asyncetl.core.settings_check import (
    identifier_names,
    non_negative_int,
    nonempty,
    positive_int,
    positive_seconds,
    retry_policy,
)

WHERE = "KafkaSource 'kafka'"


def test_accepted_values_come_back_as_given_or_as_seconds() -> None:
    assert nonempty("orders", WHERE, "topic") == "orders"
    assert positive_int(3, WHERE, "batch") == 3
    assert non_negative_int(0, WHERE, "retries") == 0
    seconds = positive_seconds(2, WHERE, "poll_timeout")
    assert seconds == 2.0
    assert isinstance(seconds, float)


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (nonempty, "", "must be a non-empty string, not ''"),
        (nonempty, 5, "must be a non-empty string, not 5"),
        (positive_int, 0, "must be a positive integer, not 0"),
        (positive_int, True, "must be a positive integer, not True"),
        (positive_int, 1.5, "must be a positive integer, not 1.5"),
        (non_negative_int, -1, "must be a non-negative integer, not -1"),
        (non_negative_int, False, "must be a non-negative integer, not False"),
        (positive_seconds, 0, "must be a positive number of seconds, not 0"),
        (positive_seconds, math.nan, "must be a positive number of seconds, not nan"),
        (positive_seconds, math.inf, "must be a positive number of seconds, not inf"),
        (positive_seconds, True, "must be a positive number of seconds, not True"),
        (positive_seconds, "5", "must be a positive number of seconds, not '5'"),
    ],
)
def test_a_refused_value_is_named_with_the_key(
    check: Callable[[object, str, str], object], value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        check(value, WHERE, "key")
    assert str(caught.value) == f"{WHERE}: key: {message}"


def test_retry_policy_counts_the_first_try_and_caps_each_wait() -> None:
    assert retry_policy(2, 30, WHERE) == RetryPolicy(max_tries=3, max_time=30.0, max_delay=5.0)


@pytest.mark.parametrize(
    ("retries", "max_time", "message"),
    [
        (-1, 60, "retries: must be a non-negative integer, not -1"),
        (5, 0, "retry_max_time: must be a positive number of seconds, not 0"),
        (5, "soon", "retry_max_time: must be a positive number of seconds, not 'soon'"),
    ],
)
def test_retry_policy_names_the_setting_it_refuses(
    retries: object, max_time: object, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        retry_policy(retries, max_time, WHERE)
    assert str(caught.value) == f"{WHERE}: {message}"


def _quote(name: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"not an identifier: {name!r}")
    return f'"{name}"'


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ("id", "must be a non-empty list of names, not 'id'"),
        ([], "must be a non-empty list of names, not []"),
        (["id", "a b"], "'a b' is not a valid SQLite identifier"),
        (["Id", "id"], "names repeat (SQLite ignores case): ['Id', 'id']"),
    ],
)
def test_identifier_names_refuses_each_bad_list_naming_the_key(names: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        identifier_names(names, "SqliteSink 'sink'", "key", quote=_quote, system="SQLite")
    assert str(caught.value) == f"SqliteSink 'sink': key: {message}"


def test_identifier_names_gives_back_a_good_list() -> None:
    names = ["id", "Name"]
    assert identifier_names(names, WHERE, "columns", quote=_quote, system="DuckDB") is names
