"""ClientSettings: one object for what HttpSource and HttpSink share, from code or a spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asyncetl import ConfigError, RetryPolicy, spec
from asyncetl.connectors.http import (
    Auth,
    ClientSettings,
    HttpSink,
    HttpSource,
    Limits,
    Timeouts,
)

URL = "http://api.example/items"

EVERYTHING = ClientSettings(
    headers={"Accept": "application/json"},
    secret_headers=("X-Tenant",),
    auth=Auth("header", api_key_env="KEY", api_key_name="X-Key"),
    timeout=Timeouts(total=12.5, connect=3, read=2),
    retry=RetryPolicy(max_tries=3, max_time=20, base_delay=0.5, max_delay=4),
    limits=Limits(requests_per_second=5, connections_per_host=4),
)


def test_a_client_table_makes_the_same_settings_as_the_objects() -> None:
    table = {
        "headers": {"Accept": "application/json"},
        "secret_headers": ["X-Tenant"],
        "auth": {"kind": "header", "api_key_env": "KEY", "api_key_name": "X-Key"},
        "timeout": {"total": 12.5, "connect": 3, "read": 2},
        "retry": {"max_tries": 3, "max_time": 20, "base_delay": 0.5, "max_delay": 4},
        "limits": {"requests_per_second": 5, "connections_per_host": 4},
    }
    assert ClientSettings.from_mapping(table) == EVERYTHING
    assert HttpSource(URL, client=table).client.settings == EVERYTHING
    assert HttpSink(URL, client=table).client.settings == EVERYTHING


def test_a_bare_value_stands_for_the_total_timeout_and_the_auth_kind() -> None:
    assert ClientSettings.from_mapping({"timeout": 5, "auth": "bearer"}) == ClientSettings(
        timeout=Timeouts(total=5), auth=Auth("bearer")
    )


def test_text_from_the_environment_is_read_as_the_number_it_spells() -> None:
    table = {"timeout": {"total": "7.5"}, "retry": {"max_tries": "2"}}
    assert ClientSettings.from_mapping(table) == ClientSettings(
        timeout=Timeouts(total=7.5), retry=RetryPolicy(max_tries=2)
    )


def test_a_settings_object_is_shared_by_source_and_sink() -> None:
    source, sink = HttpSource(URL, client=EVERYTHING), HttpSink(URL, client=EVERYTHING)
    assert source.client.settings is EVERYTHING
    assert sink.client.settings is EVERYTHING


def test_the_repr_of_settings_hides_secret_header_values() -> None:
    settings = ClientSettings(
        headers={"Authorization": "Bearer tok-1", "X-Tenant": "t-1", "Accept": "text/csv"},
        secret_headers=("x-tenant",),
    )
    assert repr(settings) == (
        "ClientSettings(headers={'Authorization': '***', 'X-Tenant': '***', "
        "'Accept': 'text/csv'}, secret_headers=('x-tenant',), auth=Auth(kind=None, "
        "token_env='API_TOKEN', username_env='API_USERNAME', password_env='API_PASSWORD', "
        "api_key_env='API_KEY', api_key_name=''), timeout=Timeouts(total=30.0, "
        "connect=10.0, read=None), retry=RetryPolicy(max_tries=5, max_time=60.0, "
        "base_delay=0.1, max_delay=30.0), limits=Limits(requests_per_second=None, "
        "connections_per_host=16))"
    )


def test_the_flat_keywords_of_older_specs_fold_into_the_settings() -> None:
    flat: dict[str, Any] = {
        "headers": {"Accept": "application/json"},
        "auth": "header",
        "api_key_env": "KEY",
        "api_key_name": "X-Key",
        "timeout": 12.5,
        "connect_timeout": 3,
        "read_timeout": 2,
        "max_tries": 3,
        "max_time": 20,
        "base_delay": 0.5,
        "max_delay": 4,
        "rate_limit": 5,
        "limit_per_host": 4,
    }
    expected = ClientSettings(
        headers=EVERYTHING.headers,
        auth=EVERYTHING.auth,
        timeout=EVERYTHING.timeout,
        retry=EVERYTHING.retry,
        limits=EVERYTHING.limits,
    )
    assert HttpSource(URL, **flat).client.settings == expected
    assert HttpSink(URL, **flat).client.settings == expected


def test_flat_keywords_and_a_client_table_combine_when_they_set_different_things() -> None:
    source = HttpSource(URL, max_tries=2, client={"retry": {"max_time": 9}, "timeout": 4})
    assert source.client.settings == ClientSettings(
        retry=RetryPolicy(max_tries=2, max_time=9), timeout=Timeouts(total=4)
    )


@pytest.mark.parametrize(
    ("flat", "client", "message"),
    [
        (
            {"timeout": 5},
            {"timeout": {"total": 6}},
            "timeout: is set both here and as client.timeout.total; keep one of them",
        ),
        (
            {"timeout": 5},
            {"timeout": 6},
            "timeout: is set both here and as client.timeout.total; keep one of them",
        ),
        (
            {"auth": "basic"},
            {"auth": "bearer"},
            "auth: is set both here and as client.auth.kind; keep one of them",
        ),
        (
            {"headers": {"A": "1"}},
            {"headers": {"B": "2"}},
            "headers: is set both here and as client.headers; keep one of them",
        ),
        (
            {"rate_limit": 1},
            ClientSettings(),
            "rate_limit: client is a ClientSettings, so set client.limits.requests_per_second "
            "there, not rate_limit beside it",
        ),
    ],
)
def test_a_setting_given_both_flat_and_in_client_is_refused(
    flat: dict[str, Any], client: Any, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        HttpSource(URL, client=client, **flat)
    assert str(caught.value) == f"HttpSource 'http': {message}"
    with pytest.raises(ConfigError) as caught:
        HttpSink(URL, client=client, **flat)
    assert str(caught.value) == f"HttpSink 'http': {message}"


@pytest.mark.parametrize(
    ("client", "flat", "message"),
    [
        (
            {"timeouts": 5},
            {},
            "client.timeouts: unknown key; client accepts auth, headers, limits, retry, "
            "secret_headers, timeout",
        ),
        (
            {"timeout": {"totl": 5}},
            {},
            "client.timeout.totl: unknown key; client.timeout accepts connect, read, total",
        ),
        ({"timeout": {"read": 0}}, {}, "client.timeout.read: must be a positive number, not 0"),
        ({}, {"read_timeout": 0}, "read_timeout: must be a positive number, not 0"),
        ({"timeout": "soon"}, {}, "client.timeout.total: must be a number, not 'soon'"),
        ({"retry": {"max_tries": 0}}, {}, "client.retry: max_tries must be at least 1, not 0"),
        ({}, {"max_tries": 0}, "max_tries: max_tries must be at least 1, not 0"),
        ({"retry": 3}, {}, "client.retry: must be a table, not 3"),
        (
            {"limits": {"connections_per_host": 0}},
            {},
            "client.limits.connections_per_host: must be a positive integer, not 0",
        ),
        (
            {"auth": "oauth"},
            {},
            "client.auth: must be one of bearer, basic, header, query or left out, not 'oauth'",
        ),
        ({"headers": {"A": 1}}, {}, "client.headers: must be a table of text values"),
    ],
)
def test_a_bad_client_setting_names_its_key(
    client: dict[str, Any], flat: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        HttpSource(URL, client=client, **flat)
    assert str(caught.value) == f"HttpSource 'http': {message}"


def test_an_unknown_flat_keyword_lists_what_the_connector_accepts() -> None:
    with pytest.raises(ConfigError) as caught:
        HttpSink(URL, timout=5)
    assert str(caught.value) == (
        "HttpSink 'http': timout: unknown key; HttpSink accepts api_key_env, api_key_name, "
        "auth, base_delay, client, connect_timeout, headers, idempotency_header, "
        "limit_per_host, max_concurrency, max_delay, max_time, max_tries, method, name, "
        "password_env, per_record, rate_limit, read_timeout, timeout, token_env, url, "
        "username_env"
    )


# -- from a spec file -------------------------------------------------------------------

SPEC = """
[pipeline]
name = "p"

[source]
type = "http"
url = "http://api.example/items"
pagination = "page"
{source}

[sink]
type = "null"
"""


def build(tmp_path: Path, source: str) -> HttpSource:
    path = tmp_path / "pipeline.toml"
    path.write_text(SPEC.format(source=source))
    built = spec.build_pipeline(path).source
    assert isinstance(built, HttpSource)
    return built


def test_a_spec_sets_the_client_in_a_source_client_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_TIMEOUT", "12.5")
    source = build(
        tmp_path,
        """
[source.client]
headers = {Accept = "application/json"}
secret_headers = ["X-Tenant"]
auth = {kind = "header", api_key_env = "KEY", api_key_name = "X-Key"}
timeout = {total = "${HTTP_TIMEOUT}", connect = 3, read = 2}
retry = {max_tries = 3, max_time = 20, base_delay = 0.5, max_delay = 4}
limits = {requests_per_second = 5, connections_per_host = 4}
""",
    )
    assert source.client.settings == EVERYTHING


def test_a_spec_with_the_flat_keys_of_before_still_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_TIMEOUT", "12.5")
    source = build(
        tmp_path,
        """
headers = {Accept = "application/json"}
auth = "header"
api_key_env = "KEY"
api_key_name = "X-Key"
timeout = "${HTTP_TIMEOUT}"
connect_timeout = 3
read_timeout = 2
max_tries = 3
max_time = 20
base_delay = 0.5
max_delay = 4
rate_limit = 5
limit_per_host = 4
""",
    )
    assert source.client.settings == ClientSettings(
        headers=EVERYTHING.headers,
        auth=EVERYTHING.auth,
        timeout=EVERYTHING.timeout,
        retry=EVERYTHING.retry,
        limits=EVERYTHING.limits,
    )


def test_a_spec_that_sets_a_key_both_ways_names_the_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, "timeout = 5\n\n[source.client]\ntimeout = {total = 6}\n")
    assert str(caught.value) == (
        f"{tmp_path / 'pipeline.toml'}: source.timeout: is set both here and as "
        "client.timeout.total; keep one of them"
    )


def test_a_spec_with_a_bad_client_value_names_the_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, "[source.client]\ntimeout = {read = -1}\n")
    assert str(caught.value) == (
        f"{tmp_path / 'pipeline.toml'}: source.client.timeout.read: must be a positive "
        "number, not -1"
    )
