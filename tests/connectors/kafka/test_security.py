"""SASL and TLS settings of the Kafka source and sink: validation, aiokafka's keywords, secrets.

The test broker (Tansu 0.6.0) can require SCRAM authentication but, with
in-memory storage (the only one built in), holds no user and refuses to create
one before authentication; ``--cert`` leaves its listener speaking plaintext.
So a real broker is used to show that the settings reach the wire (it refuses
the credentials), and the TLS context is checked as built.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from asyncetl import ConfigError, PermanentError, TransientError
from asyncetl.connectors.kafka import KafkaSecurity, KafkaSink, KafkaSource
from asyncetl.core.redact import redact
from asyncetl.spec import build_pipeline

TLS = Path(__file__).parent / "tls"
CERT, KEY = str(TLS / "client.pem"), str(TLS / "client.key")
PASSWORD = "kafka-pw-7d41c"


def scram(**more: str) -> dict[str, str]:
    return {
        "protocol": "SASL_PLAINTEXT",
        "mechanism": "SCRAM-SHA-512",
        "username": "etl",
        "password": PASSWORD,
        **more,
    }


@pytest.mark.anyio
async def test_sasl_settings_become_aiokafkas_keywords() -> None:
    source = KafkaSource("127.0.0.1:9092", ["orders"], group="etl", security=scram())
    sink = KafkaSink("127.0.0.1:9092", "orders", security=KafkaSecurity(**scram()))  # type: ignore[arg-type]

    for settings in (
        await source.client.connection_settings(),
        await sink.client.connection_settings(),
    ):
        assert settings == {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "etl",
            "sasl_plain_password": PASSWORD,
        }


@pytest.mark.anyio
async def test_tls_settings_build_a_verifying_context_with_the_given_authority_and_client_key() -> (
    None
):
    security = {"protocol": "SASL_SSL", "ca_file": CERT, "cert_file": CERT, "key_file": KEY}
    source = KafkaSource("127.0.0.1:9092", ["orders"], group="etl", security=scram(**security))

    settings = await source.client.connection_settings()

    context = settings.pop("ssl_context")
    assert settings == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "etl",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    [authority] = context.get_ca_certs()
    assert authority["subject"] == ((("commonName", "asyncetl test client"),),)


@pytest.mark.anyio
async def test_a_key_file_that_is_no_key_is_a_problem_of_the_check_not_a_traceback() -> None:
    sink = KafkaSink(
        "127.0.0.1:9092",
        "orders",
        security={"protocol": "SSL", "cert_file": CERT, "key_file": CERT},
    )
    [problem] = await sink.check()
    assert problem.setting == "security"
    assert problem.message.startswith(
        f"KafkaSink 'kafka_sink': security: cannot use the TLS files (cert_file {CERT!r}, "
        f"key_file {CERT!r}): "
    )
    assert problem.message.endswith("; give readable PEM files")


def test_the_password_is_hidden_from_repr_and_every_redacted_text() -> None:
    security = KafkaSecurity(**scram())  # type: ignore[arg-type]
    assert PASSWORD not in repr(security)
    assert redact(f"connect with {PASSWORD} failed") == "connect with *** failed"


SPEC = """
[pipeline]
name = "secure"

[source]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topics = ["orders"]
group = "etl"

[source.security]
protocol = "SASL_SSL"
mechanism = "SCRAM-SHA-256"
username = "etl"
password = "spec-pw-5521"
ca_file = "CA"

[sink]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "copied"
"""


def test_a_spec_security_table_reaches_the_source(tmp_path: Path) -> None:
    spec = tmp_path / "kafka.toml"
    spec.write_text(SPEC.replace("CA", CERT))
    built = build_pipeline(spec)
    assert isinstance(built.source, KafkaSource)
    assert built.source.client.security == KafkaSecurity(
        "SASL_SSL", "SCRAM-SHA-256", "etl", "spec-pw-5521", ca_file=CERT
    )
    assert isinstance(built.sink, KafkaSink)
    assert built.sink.client.security.protocol == "PLAINTEXT"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'mechanism = "SCRAM-SHA-256"',
            'mechanism = "GSSAPI"',
            "kafka.toml: source.security.mechanism: expected one of PLAIN, SCRAM-SHA-256, "
            "SCRAM-SHA-512, got 'GSSAPI'",
        ),
        (
            'mechanism = "SCRAM-SHA-256"',
            "",
            "kafka.toml: source.security.mechanism: SASL_SSL needs a SASL mechanism, "
            "e.g. SCRAM-SHA-512",
        ),
        (
            'password = "spec-pw-5521"',
            'password = ""',
            "kafka.toml: source.security.password: SCRAM-SHA-256 needs a non-empty password",
        ),
        (
            'protocol = "SASL_SSL"',
            'protocol = "SSL"',
            "kafka.toml: source.security.mechanism: is for SASL connections; set protocol to "
            "one with SASL",
        ),
        (
            'protocol = "SASL_SSL"',
            'protocol = "SASL_PLAINTEXT"',
            "kafka.toml: source.security.ca_file: is for SSL connections; set protocol to "
            "one with SSL",
        ),
        (
            'ca_file = "CA"',
            'ca_file = "/nowhere/ca.pem"',
            "kafka.toml: source.security.ca_file: no such file: '/nowhere/ca.pem'",
        ),
        (
            'ca_file = "CA"',
            'cert_file = "CA"',
            "kafka.toml: source.security.key_file: give cert_file and key_file together, "
            "or neither",
        ),
        (
            'ca_file = "CA"',
            'ca = "CA"',
            "kafka.toml: source.security: unknown setting 'ca'; expected some of ca_file, "
            "cert_file, key_file, mechanism, password, protocol, username",
        ),
        (
            'protocol = "SASL_SSL"',
            'protocol = "TLS"',
            "kafka.toml: source.security.protocol: expected one of PLAINTEXT, SSL, "
            "SASL_PLAINTEXT, SASL_SSL, got 'TLS'",
        ),
    ],
)
def test_a_wrong_security_setting_is_one_line_naming_file_and_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    spec = tmp_path / "kafka.toml"
    spec.write_text(SPEC.replace(old, new).replace("CA", CERT))
    with pytest.raises(ConfigError) as caught:
        build_pipeline(spec)
    assert str(caught.value) == f"{tmp_path}/{message}"
    assert "spec-pw-5521" not in str(caught.value)


@pytest.mark.anyio
async def test_a_broker_refusing_the_scram_credentials_fails_at_once_naming_user_and_mechanism(
    authenticating_kafka: str,
) -> None:
    sink = KafkaSink(authenticating_kafka, "orders", security=scram(), retries=3)

    with capture_logs() as logs, pytest.raises(PermanentError) as caught:
        await sink.open()
    await sink.aclose()

    assert str(caught.value) == (
        f"Kafka at {authenticating_kafka} refused the SCRAM-SHA-512 credentials of user "
        "'etl' for KafkaSink 'kafka_sink'; check security.username and security.password"
    )
    assert [log for log in logs if log.get("event") == "retrying"] == []  # not retried
    assert PASSWORD not in repr(logs)


@pytest.mark.anyio
async def test_a_client_without_sasl_is_turned_away_by_a_broker_that_requires_it(
    authenticating_kafka: str,
) -> None:
    source = KafkaSource(authenticating_kafka, ["orders"], group="etl", retries=0, retry_max_time=2)
    with capture_logs():
        problems = await source.check()
    assert [problem.setting for problem in problems] == ["bootstrap_servers"]
    assert problems[0].message.startswith(
        f"Kafka at {authenticating_kafka} is unreachable or did not answer connect in time ("
    )
    assert problems[0].message.endswith(
        "); check that the broker is running and that bootstrap_servers is right"
    )


@pytest.mark.anyio
async def test_with_sasl_an_unreachable_broker_names_the_security_settings_too() -> None:
    settings: dict[str, Any] = scram()
    sink = KafkaSink("127.0.0.1:9", "orders", security=settings, retries=0, retry_max_time=2)
    with capture_logs(), pytest.raises(TransientError) as caught:
        await sink.open()
    await sink.aclose()
    assert str(caught.value).endswith(
        "); check that the broker is running and that bootstrap_servers and the security "
        "settings are right"
    )
