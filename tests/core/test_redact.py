"""Showing URLs and DSNs without their passwords, however they are mistyped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncetl.core import redact as core_redact
from asyncetl.core.redact import (
    misplaced_userinfo,
    redact,
    redact_url,
    redact_urls,
    redact_values,
    remember_secret,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://etl:pw@db:5432/app", "postgresql://etl:***@db:5432/app"),
        ("postgresql://etl:p#w@db/app", "postgresql://etl:***@db/app"),
        ("postgresql://etl:p/w@db/app", "postgresql://etl:***@db/app"),
        ("postgresql://etl:p?w@db/app", "postgresql://etl:***@db/app"),
        ("postgresql://etl:p@w@db/app", "postgresql://etl:***@db/app"),
        ("postgresql:/etl:pw@db/app", "postgresql:/etl:***@db/app"),
        ("postgresql:etl:pw@db/app", "postgresql:***@db/app"),
        ("redis:/x:pw@host", "redis:/x:***@host"),
        ("htp://u:pw@h", "htp://u:***@h"),
        ("u:pw@h:4222", "u:***@h:4222"),
        ("postgresql://db/app?user=a@tenant", "postgresql://db/app?user=a@tenant"),
        (
            "postgresql://db/app?password=pw&sslmode=require",
            "postgresql://db/app?password=***&sslmode=require",
        ),
        ("https://h/x?token=pw", "https://h/x?token=***"),
        ("nats://h:4222", "nats://h:4222"),
    ],
)
def test_the_password_is_hidden_however_the_url_is_written(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_userinfo_without_colon_is_hidden_only_when_asked() -> None:
    assert redact_url("https://token@h/x") == "https://token@h/x"
    assert redact_url("https://token@h/x", hide_user_only=True) == "https://***@h/x"


def test_urls_inside_text_are_redacted_up_to_a_space_or_quote() -> None:
    text = "cannot open 'postgresql://etl:p#w@db/app' nor redis://:pw@h:6379/0 today"
    assert (
        redact_urls(text)
        == "cannot open 'postgresql://etl:***@db/app' nor redis://:***@h:6379/0 today"
    )


@pytest.mark.parametrize(
    ("url", "misplaced"),
    [
        ("postgresql://etl:p#w@db/app", True),
        ("postgresql://etl:p/w@db/app", True),
        ("postgresql://etl:12?w@db/app", True),
        ("postgresql:/etl:pw@db/app", True),
        ("postgresql://etl:pw@db/app", False),
        ("postgresql://etl:p%23w@db/app", False),
        ("postgresql://db/app?user=a@tenant&sslmode=require", False),
    ],
)
def test_an_at_sign_past_the_authority_is_a_cut_short_userinfo(url: str, misplaced: bool) -> None:
    assert misplaced_userinfo(url) is misplaced


@given(
    scheme=st.sampled_from(["postgresql://", "postgresql:/", "redis://", "redis:/", "htp://", ""]),
    password=st.text(alphabet="abcXYZ019#/?@:%!&=;", min_size=1, max_size=12),
)
def test_no_password_survives_redaction(scheme: str, password: str) -> None:
    url = f"{scheme}etl:SECRET{password}@db.example:5432/app"
    assert "SECRET" not in redact_url(url)
    if scheme:  # in free text, only what starts with a scheme reads as a URL
        assert "SECRET" not in redact_urls(f"error: {url!r} is wrong")


def test_values_are_redacted_wherever_they_nest_and_keep_their_shape() -> None:
    error = RuntimeError("redis://:pw@h")
    value = {"a": ["redis://:pw@h", ("x", "nats://u:pw@h"), 7], "b": error}
    assert redact_values(value) == {
        "a": ["redis://:***@h", ("x", "nats://u:***@h"), 7],
        "b": error,
    }


def test_a_remembered_secret_is_hidden_in_every_string_of_a_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core_redact, "_secrets", [])
    remember_secret("pw")
    remember_secret("long pw")
    event = {"error": "bad token 'long pw'", "calls": ["GET /?k=pw", ("a\\npw",)], "n": 1}
    assert redact_values(event) == {
        "error": "bad token '***'",
        "calls": ["GET /?k=***", ("a\\n***",)],
        "n": 1,
    }
    assert redact("nothing secret here") == "nothing secret here"
