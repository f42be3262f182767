"""Secrets on the command line: ``--env-file``, ``${file:…}``, and no password in any output."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import FILES_SPEC, cli

SPEC_COMMANDS = [
    ["run"],
    ["validate"],
    ["dlq", "list"],
    ["dlq", "replay"],
    ["cdc", "status"],
    ["cdc", "drop"],
    ["checkpoint", "show"],
    ["checkpoint", "reset"],
    ["backfill"],
    ["backfill-status"],
    ["flow"],
]

TOKEN_TRANSFORM = """
import os


def token_seen(record):
    return {**record, "exported": os.environ.get("API_TOKEN")}
"""


@pytest.mark.parametrize("command", SPEC_COMMANDS, ids=" ".join)
def test_every_command_that_reads_a_spec_takes_env_files(
    tmp_path: Path, command: list[str]
) -> None:
    result = cli(tmp_path, *command, "--help")
    assert result.returncode == 0
    assert "--env-file FILE" in result.stdout


def test_run_reads_references_from_env_files_without_exporting_them(project: Path) -> None:
    (project / "tokens_seen.py").write_text(TOKEN_TRANSFORM)
    (project / "env.toml").write_text(
        FILES_SPEC.replace('path = "out.jsonl"', 'path = "${OUT}"').replace(
            'function = "helpers:invert"', 'function = "tokens_seen:token_seen"'
        )
    )
    (project / "a.env").write_text("OUT=wrong.jsonl\nAPI_TOKEN=s3cret-token\n")
    (project / "b.env").write_text("# later files win\nOUT='from env.jsonl'\n")
    result = cli(project, "run", "env.toml", "--env-file", "a.env", "--env-file", "b.env")
    assert result.returncode == 0, result.stderr
    lines = (project / "from env.jsonl").read_text().splitlines()
    assert [json.loads(line)["exported"] for line in lines] == [None, None, None]
    assert not (project / "wrong.jsonl").exists()


def test_values_from_env_files_and_secret_files_are_never_printed(project: Path) -> None:
    (project / "batch.txt").write_text("hunter2-batch\n")
    (project / "a.env").write_text('AGE="s3cret age"\n')
    spec = FILES_SPEC.replace(
        'source_errors = "dead_letter"',
        'source_errors = "dead_letter"\nmax_batch_size = "${file:batch.txt}"',
    )
    (project / "bad.toml").write_text(spec)
    result = cli(project, "validate", "bad.toml", "--env-file", "a.env")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "error: bad.toml: pipeline.max_batch_size: expected an integer, got '***'\n"
    )
    (project / "bad.toml").write_text(spec.replace("${file:batch.txt}", "${AGE}"))
    result = cli(project, "validate", "bad.toml", "--env-file", "a.env")
    assert result.stderr == (
        "error: bad.toml: pipeline.max_batch_size: expected an integer, got '***'\n"
    )


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (
            "${file:missing.txt}",
            "sink.path: cannot read the secret file 'missing.txt': No such file or directory",
        ),
        (
            "out-${NAME",
            "sink.path: a ${ is not closed by }; close it, or write $${ for a literal ${",
        ),
    ],
)
def test_bad_references_exit_2_naming_file_and_key(
    project: Path, reference: str, message: str
) -> None:
    (project / "bad.toml").write_text(
        FILES_SPEC.replace('path = "out.jsonl"', f'path = "{reference}"')
    )
    result = cli(project, "run", "bad.toml")
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        f"error: bad.toml: {message}\n",
    )


def test_a_missing_env_file_exits_2(project: Path) -> None:
    result = cli(project, "validate", "files.toml", "--env-file", "nope.env")
    assert (result.returncode, result.stderr) == (
        2,
        "error: nope.env: cannot read the env file: No such file or directory\n",
    )


@pytest.mark.parametrize(
    ("table", "shown"),
    [
        (
            '[source]\ntype = "http"\nurl = "htp://etl:s3cret-pw@api.example/items"',
            "source.url: must be an absolute http(s) URL, not 'htp://etl:***@api.example/items'",
        ),
        (
            '[source]\ntype = "postgres"\ndsn = "postgresql:/etl:s3cret-pw@db/app"\ntable = "t"',
            "source: 'postgresql:/etl:***@db/app' is not a PostgreSQL DSN; "
            "write postgresql://user@host:port/database (user:password@ with a password)",
        ),
        (
            '[source]\ntype = "postgres"\ndsn = "postgresql://etl:s3cret#pw@db/app"\ntable = "t"',
            "source: cannot read 'postgresql://etl:***@db/app': a password or database name "
            "must write '@', '/', '?' and '#' as %40, %2F, %3F and %23",
        ),
        (
            '[source]\ntype = "redis"\nurl = "redis:/x:s3cret-pw@host"\nstream = "s"\ngroup = "g"',
            "source.url: expected a redis://, rediss:// or unix:// URL, got 'redis:/x:***@host'",
        ),
        (
            '[source]\ntype = "kafka"\ntopics = ["t"]\ngroup = "g"\n'
            'bootstrap_servers = "etl:s3cret-pw@127.0.0.1:9092"',
            "source.bootstrap_servers: expected a broker as 'host:port', not 'etl:***@127.0.0.1:9092'",
        ),
    ],
    ids=["http scheme", "postgres one slash", "postgres hash", "redis one slash", "kafka userinfo"],
)
def test_a_mistyped_url_never_shows_its_password(project: Path, table: str, shown: str) -> None:
    spec = FILES_SPEC.replace('[source]\ntype = "jsonl"\npath = "in.jsonl"', table)
    (project / "url.toml").write_text(spec)
    result = cli(project, "validate", "url.toml")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: url.toml: {shown}\n"


UNREACHABLE_API = """
[source]
type = "http"
url = "http://127.0.0.1:1/items?k=${API_KEY}"

[source.client]
retry = {max_tries = 2, max_time = 1}
"""
#: The failed call, as every log line and the error name it once the key is hidden.
CALL = "GET http://127.0.0.1:1/items?limit=100&page=1&k=***"


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_an_env_file_value_is_hidden_in_log_lines_of_either_format(
    project: Path, log_format: str
) -> None:
    spec = FILES_SPEC.replace('[source]\ntype = "jsonl"\npath = "in.jsonl"', UNREACHABLE_API)
    (project / "api.toml").write_text(spec)
    (project / "a.env").write_text("API_KEY=hunter2-key\n")
    result = cli(project, "run", "api.toml", "--env-file", "a.env", "--log-format", log_format)
    assert (result.returncode, result.stdout) == (1, "")
    assert "hunter2" not in result.stderr
    *logs, error = result.stderr.splitlines()
    assert error.startswith(
        f"error: stage 'http' failed reading from the start: "
        f"TransientError: {CALL} failed: ClientConnectorError: "
    )
    if log_format == "json":
        retries = [line for line in map(json.loads, logs) if line["event"] == "retrying"]
        assert [line["call"] for line in retries] == [CALL]
        assert retries[0]["error"].startswith(f"TransientError: {CALL} failed: ")
    else:
        assert sum(f"call='{CALL}'" in line for line in logs) == 1


class _AccessDenied(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that refuses the key, as one does when the secret is wrong."""

    def do_HEAD(self) -> None:
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_HEAD

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_s3() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AccessDenied)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_parquet_url_with_a_secret_key_never_shows_it(project: Path, refusing_s3: str) -> None:
    url = f"s3://AKID1:s3cret-key@bucket/out?endpoint_override={refusing_s3}&scheme=http"
    spec = FILES_SPEC.replace('[sink]\ntype = "jsonl"\npath = "out.jsonl"', "").replace(
        "[checkpoints]", f'[sink]\ntype = "parquet"\npath = "{url}"\n\n[checkpoints]'
    )
    (project / "s3.toml").write_text(spec)
    result = cli(project, "run", "s3.toml")
    assert (result.returncode, result.stdout) == (1, "")
    assert "s3cret-key" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "error: ParquetSink parquet_sink could not open in "
        f"s3://AKID1:***@bucket/out?endpoint_override={refusing_s3}&scheme=http: "
    )
