"""Secrets kept out of spec files: env files, ``${file:…}``, and never shown once read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asyncetl import ConfigError
from asyncetl.core import redact as core_redact
from asyncetl.spec import _secrets, build_pipeline, read_env_file, redact, use_env_file

SPEC = """
[pipeline]
name = "secrets"
max_batch_size = {batch}

[source]
type = "list"
records = [{{n = 1}}]

[sink]
type = "jsonl"
path = "{path}"
"""


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh current directory, and no env file or secret remembered from another test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_secrets, "_env_values", {})
    monkeypatch.setattr(core_redact, "_secrets", [])
    return tmp_path


def spec(directory: Path, *, batch: str = "10", path: str = "out.jsonl") -> str:
    (directory / "pipeline.toml").write_text(SPEC.format(batch=batch, path=path))
    return "pipeline.toml"


def spec_error(name: str) -> str:
    with pytest.raises(ConfigError) as caught:
        build_pipeline(name)
    return str(caught.value)


# -- env files ---------------------------------------------------------------------------


def test_an_env_file_is_read_as_dotenv_does(workdir: Path) -> None:
    (workdir / ".env").write_text(
        "# database\n"
        "\n"
        "PLAIN=a b  # a comment\n"
        "export EXPORTED=1\n"
        "SINGLE='it''s # not a comment'\n".replace("''", "")
        + 'DOUBLE="line\\nnext \\"quoted\\" # kept"\n'
        "EMPTY=\n"
        "  SPACED = value  \n"
        "HASH=pa#ss\n"
    )
    assert read_env_file(".env") == {
        "PLAIN": "a b",
        "EXPORTED": "1",
        "SINGLE": "its # not a comment",
        "DOUBLE": 'line\nnext "quoted" # kept',
        "EMPTY": "",
        "SPACED": "value",
        "HASH": "pa#ss",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "OK=1\nnot a line s3cret\n",
            ".env: line 2 is not KEY=VALUE (a quoted value must close its quote)",
        ),
        ("KEY='s3cret\n", ".env: line 1 is not KEY=VALUE (a quoted value must close its quote)"),
        (
            'KEY="s3cret" trailing\n',
            ".env: line 1 is not KEY=VALUE (a quoted value must close its quote)",
        ),
    ],
)
def test_a_bad_env_file_line_is_named_never_shown(workdir: Path, text: str, message: str) -> None:
    (workdir / ".env").write_text(text)
    with pytest.raises(ConfigError) as caught:
        use_env_file(".env")
    assert str(caught.value) == message


def test_a_missing_env_file_is_a_config_error(workdir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        use_env_file("missing.env")
    assert str(caught.value) == "missing.env: cannot read the env file: No such file or directory"


def test_env_file_values_fill_references_and_are_not_exported(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OUT_PATH", raising=False)
    monkeypatch.setenv("BATCH", "25")
    (workdir / ".env").write_text("OUT_PATH=from-file.jsonl\nBATCH=99\n")
    use_env_file(".env")
    pipeline = build_pipeline(spec(workdir, batch='"${BATCH}"', path="${OUT_PATH}"))
    assert str(pipeline.sink.path) == "from-file.jsonl"  # type: ignore[attr-defined]
    assert pipeline.max_batch_size == 25  # the environment wins over the file
    assert "OUT_PATH" not in os.environ


def test_env_file_values_are_hidden_in_messages(workdir: Path) -> None:
    (workdir / ".env").write_text("BATCH=s3cret-batch\n")
    use_env_file(".env")
    assert spec_error(spec(workdir, batch='"${BATCH}"')) == (
        "pipeline.toml: pipeline.max_batch_size: expected an integer, got '***'"
    )
    assert redact("said s3cret-batch twice: s3cret-batch") == "said *** twice: ***"


def test_a_secret_is_hidden_also_as_repr_escapes_it(workdir: Path) -> None:
    (workdir / ".env").write_text('BATCH="two\\nlines"\n')
    use_env_file(".env")
    assert spec_error(spec(workdir, batch='"${BATCH}"')) == (
        "pipeline.toml: pipeline.max_batch_size: expected an integer, got '***'"
    )


def test_an_unused_env_file_value_is_not_a_secret(workdir: Path) -> None:
    (workdir / ".env").write_text("UNUSED=10\n")
    use_env_file(".env")
    assert spec_error(spec(workdir, batch='"x10"')) == (
        "pipeline.toml: pipeline.max_batch_size: expected an integer, got 'x10'"
    )


# -- ${file:...} -------------------------------------------------------------------------


def test_a_file_reference_is_the_files_content_without_its_trailing_newline(
    workdir: Path,
) -> None:
    (workdir / "path.txt").write_text("secret-out.jsonl\n")
    pipeline = build_pipeline(spec(workdir, path=f"${{file:{workdir / 'path.txt'}}}"))
    assert str(pipeline.sink.path) == "secret-out.jsonl"  # type: ignore[attr-defined]


def test_a_file_references_content_is_hidden_in_messages(workdir: Path) -> None:
    (workdir / "batch.txt").write_text("hunter2\n")
    assert spec_error(spec(workdir, batch='"${file:batch.txt}"')) == (
        "pipeline.toml: pipeline.max_batch_size: expected an integer, got '***'"
    )


def test_a_missing_file_reference_names_spec_file_and_key(workdir: Path) -> None:
    assert spec_error(spec(workdir, path="${file:/no/such/secret}")) == (
        "pipeline.toml: sink.path: cannot read the secret file '/no/such/secret': "
        "No such file or directory"
    )


# -- ${ without } ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["${OUT_PATH", "out-${X.jsonl", "$${ok}-${"])
def test_an_unclosed_reference_is_a_config_error(workdir: Path, path: str) -> None:
    assert spec_error(spec(workdir, path=path)) == (
        "pipeline.toml: sink.path: a ${ is not closed by }; close it, or write $${ for a literal ${"
    )


def test_an_escaped_reference_stays_literal(workdir: Path) -> None:
    pipeline = build_pipeline(spec(workdir, path="$${NOT_A_VAR}.jsonl"))
    assert str(pipeline.sink.path) == "${NOT_A_VAR}.jsonl"  # type: ignore[attr-defined]


# -- URLs in messages --------------------------------------------------------------------


def test_a_url_value_is_shown_without_its_password(workdir: Path) -> None:
    assert spec_error(spec(workdir, batch='"postgresql://etl:s3cr#3t@db/app"')) == (
        "pipeline.toml: pipeline.max_batch_size: expected an integer, got "
        "'postgresql://etl:***@db/app'"
    )
