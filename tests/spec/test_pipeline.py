"""Spec files: every kind of mistake gives one exact message naming file and key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from asyncetl import ConfigError, ListSource, MemoryDeadLetterStore, NullSink, Pipeline
from asyncetl.cli import main
from asyncetl.spec import REGISTRY, build_pipeline, load_pipeline, logging_settings

GOOD = """
[pipeline]
name = "demo"

[source]
type = "list"
records = [{n = 1}, {n = 2}]

[sink]
type = "null"
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh current directory; sys.path and imported spec modules are restored after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("specmod_"):
            del sys.modules[name]


def write_module(directory: Path, source: str) -> str:
    """Write a module with a unique name into ``directory`` and return its name."""
    name = f"specmod_{uuid.uuid4().hex[:12]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def write_spec(directory: Path, text: str, name: str = "pipeline.toml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncetl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def spec_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        build_pipeline(write_spec(Path.cwd(), text).name)
    return str(caught.value)


# -- a good spec -----------------------------------------------------------------------


def test_good_spec_builds_with_the_public_classes(workdir: Path) -> None:
    pipeline = build_pipeline(write_spec(workdir, GOOD))
    assert pipeline.name == "demo"
    assert isinstance(pipeline.source, ListSource)
    assert pipeline.source.records == [{"n": 1}, {"n": 2}]
    assert isinstance(pipeline.sink, NullSink)
    assert pipeline.transforms == []
    assert pipeline.dead_letters is None


def test_pipeline_keywords_transforms_and_stores(workdir: Path) -> None:
    module = write_module(
        workdir,
        """
        def double(record):
            return {"n": record["n"] * 2}
    """,
    )
    pipeline = build_pipeline(
        write_spec(
            workdir,
            GOOD
            + f"""
        [[transforms]]
        function = "{module}:double"
        name = "double"
        workers = 2
        ordered = false
        on_error = "dead_letter"

        [[transforms]]
        function = "json:dumps"
        kind = "map"

        [checkpoints]
        type = "json"
        path = "checkpoints.json"

        [dead_letters]
        type = "memory"
    """,
        ).name
    )
    assert [t.name for t in pipeline.transforms] == ["double", "json:dumps"]
    assert (pipeline.transforms[0].workers, pipeline.transforms[0].ordered) == (2, False)
    assert pipeline.transforms[0].on_error == "dead_letter"
    assert isinstance(pipeline.dead_letters, MemoryDeadLetterStore)
    assert type(pipeline.checkpoints).__name__ == "JsonFileCheckpointStore"


def test_pipeline_table_keywords(workdir: Path) -> None:
    text = GOOD.replace(
        'name = "demo"',
        textwrap.dedent("""\
        name = "demo"
        max_batch_size = 10
        max_batch_age = 2
        queue_size = 3
        sink_errors = "fail"
        grace_period = 1.5
        summary_interval = 60
        stop_when_idle = 0.25"""),
    )
    pipeline = build_pipeline(write_spec(workdir, text))
    assert (pipeline.max_batch_size, pipeline.max_batch_age, pipeline.queue_size) == (10, 2, 3)
    assert (pipeline.grace_period, pipeline.summary_interval) == (1.5, 60)
    assert pipeline.stop_when_idle == 0.25


def test_user_class_by_module_and_name(workdir: Path) -> None:
    module = write_module(
        workdir,
        """
        from typing import Literal
        from asyncetl import Sink

        class TagSink(Sink[object]):
            def __init__(self, *, tags: list[str], headers: dict[str, str] | None = None,
                         mode: Literal["a", "b"] = "a", ratio: float = 1.0) -> None:
                self.tags, self.headers, self.mode, self.ratio = tags, headers, mode, ratio

            async def write(self, batch):
                return ()
    """,
    )
    text = GOOD.replace(
        'type = "null"',
        f"""type = "{module}:TagSink"
        tags = ["x", "y"]
        headers = {{ a = "1" }}
        mode = "b"
        ratio = 2""",
    )
    sink = build_pipeline(write_spec(workdir, text)).sink
    assert (sink.tags, sink.headers, sink.mode, sink.ratio) == (  # type: ignore[attr-defined]
        ["x", "y"],
        {"a": "1"},
        "b",
        2,
    )
    for line, message in [
        ('tags = ["x", 1]', "sink.tags: expected a list of strings, got ['x', 1]"),
        ('tags = "x"', "sink.tags: expected a list of strings, got 'x'"),
        ("headers = { a = 1 }", "sink.headers: expected a table of strings, got {'a': 1}"),
        ('mode = "c"', "sink.mode: expected one of 'a', 'b', got 'c'"),
        ('ratio = "2"', "sink.ratio: expected a number, got '2'"),
        ("ratio = true", "sink.ratio: expected a number, got true"),
    ]:
        key = line.split(" = ")[0]
        bad = "\n".join(
            line if row.strip().startswith(key + " =") else row for row in text.splitlines()
        )
        assert spec_error(bad) == f"pipeline.toml: {message}"


# -- every kind of bad spec ------------------------------------------------------------


def _source_types() -> str:
    return ", ".join(sorted(REGISTRY["source"]))


BAD_SPECS: list[tuple[str, str, str]] = [
    (
        "unknown table",
        GOOD + "[sinks]\ntype = 'null'\n",
        "sinks: unknown table; expected one of pipeline, source, transforms, sink, checkpoints, "
        "dead_letters, logging",
    ),
    (
        "missing pipeline",
        GOOD.replace('[pipeline]\nname = "demo"', ""),
        "pipeline: the [pipeline] table is missing",
    ),
    (
        "missing sink",
        GOOD.replace('[sink]\ntype = "null"', ""),
        "sink: the [sink] table is missing",
    ),
    (
        "table not a table",
        'sink = "null"\n' + GOOD.replace('[sink]\ntype = "null"', ""),
        "sink: expected a table, got 'null'",
    ),
    (
        "missing name",
        GOOD.replace('name = "demo"', ""),
        "pipeline.name: required key is missing (Pipeline needs it)",
    ),
    (
        "unknown pipeline key",
        GOOD.replace('name = "demo"', 'name = "demo"\nbatch = 5'),
        "pipeline.batch: unknown key; Pipeline accepts grace_period, log_progress, "
        "max_batch_age, max_batch_size, name, queue_size, sink_errors, source_errors, "
        "stop_when_idle, summary_interval",
    ),
    (
        "wrong type",
        GOOD.replace('name = "demo"', "name = 3"),
        "pipeline.name: expected a string, got 3",
    ),
    (
        "string for integer",
        GOOD.replace('name = "demo"', 'name = "demo"\nmax_batch_size = "9"'),
        "pipeline.max_batch_size: expected an integer, got '9'",
    ),
    (
        "boolean for integer",
        GOOD.replace('name = "demo"', 'name = "demo"\nqueue_size = true'),
        "pipeline.queue_size: expected an integer, got true",
    ),
    (
        "bad policy",
        GOOD.replace('name = "demo"', 'name = "demo"\nsource_errors = "skip"'),
        "pipeline.source_errors: expected one of 'fail', 'dead_letter', got 'skip'",
    ),
    (
        "bad value",
        GOOD.replace('name = "demo"', 'name = "demo"\nmax_batch_size = 0'),
        "pipeline.max_batch_size: must be a positive integer, not 0",
    ),
    (
        "dead_letter without store",
        GOOD.replace('name = "demo"', 'name = "demo"\nsource_errors = "dead_letter"'),
        "dead_letters: a stage uses the dead_letter policy but no dead-letter store is configured",
    ),
    (
        "missing type",
        GOOD.replace('type = "list"', ""),
        f"source.type: required key is missing; expected one of {_source_types()} "
        "or 'module:Class'",
    ),
    (
        "unknown type",
        GOOD.replace('type = "list"', 'type = "kinesis"'),
        f"source.type: unknown source type 'kinesis'; expected one of {_source_types()} "
        "or 'module:Class'",
    ),
    (
        "type class missing",
        GOOD.replace('type = "list"', 'type = "nope_mod:Source"'),
        "source.type: module 'nope_mod' not found",
    ),
    (
        "type not a source",
        GOOD.replace('type = "list"', 'type = "asyncetl:NullSink"'),
        "source.type: asyncetl:NullSink is not a Source",
    ),
    (
        "factory makes no source",
        GOOD.replace('type = "list"\nrecords = [{n = 1}, {n = 2}]', 'type = "uuid:uuid4"'),
        "source.type: uuid:uuid4 made a UUID, not a Source",
    ),
    (
        "unknown connector key",
        GOOD.replace("records = ", "recs = "),
        "source.recs: unknown key; ListSource accepts chunk_size, delay, name, records",
    ),
    (
        "missing connector key",
        GOOD.replace("records = ", "# "),
        "source.records: required key is missing (ListSource needs it)",
    ),
    (
        "connector wrong type",
        GOOD.replace("records = ", "name = 3\nrecords = "),
        "source.name: expected a string, got 3",
    ),
    (
        "transforms not an array",
        GOOD + "[transforms]\nfunction = 'json:dumps'\n",
        "transforms: expected an array of tables ([[transforms]]), got {'function': 'json:dumps'}",
    ),
    (
        "transform without function",
        GOOD + "[[transforms]]\nkind = 'map'\n",
        "transforms[0].function: required key is missing",
    ),
    (
        "function not a string",
        GOOD + "[[transforms]]\nfunction = 1\n",
        "transforms[0].function: expected a string, got 1",
    ),
    (
        "function without colon",
        GOOD + "[[transforms]]\nfunction = 'json.dumps'\n",
        "transforms[0].function: expected 'module:name', got 'json.dumps'",
    ),
    (
        "missing module",
        GOOD + "[[transforms]]\nfunction = 'nope:fn'\n",
        "transforms[0].function: module 'nope' not found",
    ),
    (
        "missing function",
        GOOD + "[[transforms]]\nfunction = 'json:nope'\n",
        "transforms[0].function: module 'json' has no attribute 'nope'",
    ),
    (
        "not a function",
        GOOD + "[[transforms]]\nfunction = 'json:__name__'\n",
        "transforms[0].function: json:__name__ is not a function",
    ),
    (
        "bad kind",
        GOOD + "[[transforms]]\nfunction = 'json:dumps'\nkind = 'reduce'\n",
        "transforms[0].kind: expected one of 'map', 'flat_map', 'batch', got 'reduce'",
    ),
    (
        "bad on_error",
        GOOD + "[[transforms]]\nfunction = 'json:dumps'\n[[transforms]]\nfunction = 'json:loads'\n"
        "on_error = 'ignore'\n",
        "transforms[1].on_error: expected one of 'fail', 'dead_letter', got 'ignore'",
    ),
    (
        "bad workers",
        GOOD + "[[transforms]]\nfunction = 'json:dumps'\nworkers = 0\n",
        "transforms[0]: workers must be a positive integer, not 0",
    ),
    (
        "unknown transform key",
        GOOD + "[[transforms]]\nfunction = 'json:dumps'\nthreads = 2\n",
        "transforms[0].threads: unknown key; Transform accepts kind, name, on_error, ordered, "
        "thread, workers",
    ),
    (
        "unset variable",
        GOOD.replace('"demo"', '"${ASYNCETL_TEST_UNSET}"'),
        "pipeline.name: environment variable ASYNCETL_TEST_UNSET is not set; set it or write "
        "${ASYNCETL_TEST_UNSET:-default}",
    ),
    (
        "malformed variable",
        GOOD.replace('"demo"', '"${1X}"'),
        "pipeline.name: malformed reference ${1X}; write ${NAME}, ${NAME:-default} or ${file:/path}",
    ),
    (
        "unset variable in a list",
        GOOD.replace("{n = 1}", '{n = "${ASYNCETL_TEST_UNSET}"}'),
        "source.records[0].n: environment variable ASYNCETL_TEST_UNSET is not set; set it or "
        "write ${ASYNCETL_TEST_UNSET:-default}",
    ),
    (
        "bad log level",
        GOOD + "[logging]\nlevel = 'loud'\n",
        "logging.level: expected one of 'debug', 'info', 'warning', 'error', 'critical', "
        "got 'loud'",
    ),
    (
        "bad log format",
        GOOD + "[logging]\nformat = 'xml'\n",
        "logging.format: expected one of 'console', 'json', got 'xml'",
    ),
    (
        "unknown logging key",
        GOOD + "[logging]\ncolour = true\n",
        "logging.colour: unknown key; LoggingSettings accepts format, level",
    ),
    (
        "duplicate stage names",
        GOOD + "[[transforms]]\nfunction = 'json:dumps'\nname = 'list_source'\n",
        "pipeline: stage names must be unique, got ['list_source', 'list_source', 'null_sink']",
    ),
    (
        "connector table of the wrong type",
        GOOD.replace('type = "null"', 'type = "sqlite"\npath = "x.db"\ntable = 3'),
        "sink.table: expected a string, got 3",
    ),
    (
        "string for a list of strings",
        GOOD.replace('type = "null"', 'type = "sqlite"\npath = "x.db"\ntable = "t"\nkey = "id"'),
        "sink.key: expected a list of strings, got 'id'",
    ),
    (
        "connector's own check",
        GOOD.replace('type = "null"', 'type = "sqlite"\npath = "x.db"\ntable = "t"\nkey = []'),
        "sink.key: must be a non-empty list of names, not []",
    ),
]


def _toml_error(text: str) -> str:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return str(exc)
    raise AssertionError("valid TOML")


@pytest.mark.parametrize(
    ("text", "message"), [(t, m) for _, t, m in BAD_SPECS], ids=[i for i, _, _ in BAD_SPECS]
)
def test_bad_spec_message(workdir: Path, text: str, message: str) -> None:
    assert spec_error(text) == f"pipeline.toml: {message}"


def test_unreadable_and_invalid_files(workdir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build_pipeline("missing.toml")
    assert str(caught.value) == "missing.toml: cannot read the spec file: No such file or directory"
    text = GOOD.replace('name = "demo"', 'name = "demo')
    assert _toml_error(text).endswith("(at line 3, column 13)")
    assert spec_error(text) == f"pipeline.toml: invalid TOML: {_toml_error(text)}"
    (workdir / "latin1.toml").write_bytes(b'[pipeline]\nname = "d\xe9mo"\n')
    with pytest.raises(ConfigError, match=r"^latin1\.toml: the spec file is not UTF-8 text: "):
        build_pipeline("latin1.toml")


def test_module_that_fails_to_import(workdir: Path) -> None:
    broken = write_module(workdir, "raise RuntimeError('boom at import')\n")
    needs = write_module(workdir, "import nope_dependency\n")
    assert spec_error(GOOD + f"[[transforms]]\nfunction = '{broken}:f'\n") == (
        f"pipeline.toml: transforms[0].function: importing module '{broken}' failed: "
        "RuntimeError: boom at import"
    )
    assert spec_error(GOOD + f"[[transforms]]\nfunction = '{needs}:f'\n") == (
        f"pipeline.toml: transforms[0].function: importing module '{needs}' failed: "
        "ModuleNotFoundError: No module named 'nope_dependency'"
    )


def test_constructor_failure_is_a_config_error(workdir: Path) -> None:
    module = write_module(
        workdir,
        """
        from asyncetl import ConfigError, Sink

        class Picky(Sink[object]):
            def __init__(self, *, mode: str = "x") -> None:
                if mode == "config":
                    raise ConfigError("cannot be 'config'", where="Picky", key="mode")
                raise OSError(13, "Permission denied")

            async def write(self, batch):
                return ()
    """,
    )
    text = GOOD.replace('type = "null"', f'type = "{module}:Picky"')
    assert spec_error(text) == (
        "pipeline.toml: sink: Picky could not be created: PermissionError: "
        "[Errno 13] Permission denied"
    )
    assert spec_error(text + 'mode = "config"\n') == "pipeline.toml: sink.mode: cannot be 'config'"


COMMANDS = (["validate"], ["run"], ["dlq", "list"], ["dlq", "replay"])


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_structlog")
@pytest.mark.parametrize("case", range(len(BAD_SPECS)), ids=[i for i, _, _ in BAD_SPECS])
def test_every_bad_spec_through_the_command_line_code(
    workdir: Path, capsys: pytest.CaptureFixture[str], case: int
) -> None:
    _, text, message = BAD_SPECS[case]
    write_spec(workdir, text)
    assert main([*COMMANDS[case % len(COMMANDS)], "pipeline.toml"]) == 2
    assert capsys.readouterr() == ("", f"error: pipeline.toml: {message}\n")


def test_bad_specs_in_a_subprocess(tmp_path: Path) -> None:
    """``python -m asyncetl`` itself: exit 2, one line on stderr, no traceback."""
    cases = [case for case in BAD_SPECS if case[0] in SUBPROCESS_CASES]

    def run(index: int) -> tuple[int, str, str]:
        directory = tmp_path / str(index)
        directory.mkdir()
        write_spec(directory, cases[index][1])
        result = cli(directory, *COMMANDS[index % len(COMMANDS)], "pipeline.toml")
        return result.returncode, result.stdout, result.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(len(cases))))
    assert len(results) == len(SUBPROCESS_CASES)
    assert dict(zip((name for name, _, _ in cases), results, strict=True)) == {
        name: (2, "", f"error: pipeline.toml: {message}\n") for name, _, message in cases
    }


SUBPROCESS_CASES = {
    "unknown table",
    "wrong type",
    "missing module",
    "unset variable",
    "bad kind",
    "dead_letter without store",
    "unknown type",
    "connector table of the wrong type",
}


def test_cli_reports_unreadable_and_invalid_files(tmp_path: Path) -> None:
    result = cli(tmp_path, "validate", "missing.toml")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "error: missing.toml: cannot read the spec file: No such file or directory\n"
    )
    text = GOOD.replace('name = "demo"', 'name = "demo')
    write_spec(tmp_path, text)
    result = cli(tmp_path, "run", "pipeline.toml")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: pipeline.toml: invalid TOML: {_toml_error(text)}\n"


# -- environment variables -------------------------------------------------------------


def test_environment_substitution(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCETL_T_NAME", "orders")
    monkeypatch.setenv("ASYNCETL_T_EMPTY", "")
    monkeypatch.delenv("ASYNCETL_T_UNSET", raising=False)
    text = GOOD.replace('"demo"', '"${ASYNCETL_T_NAME}-${ASYNCETL_T_UNSET:-dev}"').replace(
        "{n = 1}, {n = 2}",
        '{a = "${ASYNCETL_T_EMPTY:-fallback}", b = ["$${ASYNCETL_T_NAME}", "${ASYNCETL_T_UNSET:-}"]'
        ', c = "x${ASYNCETL_T_NAME}y"}',
    )
    pipeline = build_pipeline(write_spec(workdir, text))
    assert pipeline.name == "orders-dev"
    assert pipeline.source.records == [  # type: ignore[attr-defined]
        {"a": "fallback", "b": ["${ASYNCETL_T_NAME}", ""], "c": "xordersy"}
    ]


def test_substituted_text_reads_as_numbers_and_booleans(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCETL_T_SIZE", "7")
    monkeypatch.delenv("ASYNCETL_T_UNSET", raising=False)
    text = (
        GOOD.replace(
            'name = "demo"',
            'name = "${ASYNCETL_T_SIZE}"\nmax_batch_size = "${ASYNCETL_T_SIZE}"\n'
            'grace_period = "${ASYNCETL_T_UNSET:-2.5}"',
        )
        + '[[transforms]]\nfunction = "json:dumps"\nordered = "${ASYNCETL_T_UNSET:-false}"\n'
    )
    pipeline = build_pipeline(write_spec(workdir, text))
    assert (pipeline.name, pipeline.max_batch_size, pipeline.grace_period) == ("7", 7, 2.5)
    assert pipeline.transforms[0].ordered is False
    assert type(pipeline.name) is str
    not_a_number = 'max_batch_size = "${ASYNCETL_T_UNSET:-lots}"'
    assert spec_error(text.replace('max_batch_size = "${ASYNCETL_T_SIZE}"', not_a_number)) == (
        "pipeline.toml: pipeline.max_batch_size: expected an integer, got 'lots'"
    )
    # Written as a TOML string without a reference, it stays a string (and an error).
    assert spec_error(text.replace('size = "${ASYNCETL_T_SIZE}"', 'size = "7"')) == (
        "pipeline.toml: pipeline.max_batch_size: expected an integer, got '7'"
    )


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc"))))
def test_text_without_references_is_unchanged(text: str) -> None:
    spec = GOOD.replace('"demo"', json.dumps(text.replace("${", "$${"), ensure_ascii=False))
    data = tomllib.loads(spec)
    from asyncetl.spec._files import substitute as _substitute

    assert _substitute(data, "p.toml", "")["pipeline"]["name"] == text


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    return repr(value)


@given(
    st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        # "$" starts an interpolation, which has tests of its own
        st.text(
            st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="$"), max_size=5
        ),
        st.lists(st.integers(0, 9), max_size=3),
    )
)
def test_integer_keys_accept_exactly_positive_integers(value: object) -> None:
    from asyncetl.spec.pipeline import _Builder

    text = GOOD.replace('name = "demo"', f'name = "demo"\nqueue_size = {_toml_value(value)}')
    build = _Builder("p.toml", Path("p.toml")).pipeline
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        assert build(tomllib.loads(text)).queue_size == value
        return
    with pytest.raises(ConfigError) as caught:
        build(tomllib.loads(text))
    if isinstance(value, int) and not isinstance(value, bool):
        problem = f"must be a positive integer, not {value}"
    else:
        shown = ("true" if value else "false") if isinstance(value, bool) else repr(value)
        problem = f"expected an integer, got {shown if len(shown) <= 60 else shown[:57] + '...'}"
    assert str(caught.value) == f"p.toml: pipeline.queue_size: {problem}"


def test_environment_default_on_the_command_line(tmp_path: Path) -> None:
    write_spec(tmp_path, GOOD.replace('"demo"', '"${ASYNCETL_T_NAME:-fallback}"'))
    assert cli(tmp_path, "validate", "pipeline.toml").stdout == "ok: fallback\n"
    result = cli(tmp_path, "validate", "pipeline.toml", env={"ASYNCETL_T_NAME": "set"})
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok: set\n", "")


# -- module:attribute specs ------------------------------------------------------------

FACTORIES = """
from asyncetl import ListSource, NullSink, Pipeline

def make():
    return Pipeline("from-factory", ListSource([1, 2, 3]), NullSink())

async def make_async():
    return Pipeline("from-async-factory", ListSource([1, 2]), NullSink())

def needs_argument(x):
    return make()

def not_a_pipeline():
    return 42

PIPELINE = Pipeline("from-attribute", ListSource([1]), NullSink())
NUMBER = 7
"""


def test_attribute_specs(workdir: Path) -> None:
    module = write_module(workdir, FACTORIES)
    assert build_pipeline(f"{module}:PIPELINE").name == "from-attribute"
    assert build_pipeline(f"{module}:make").name == "from-factory"
    assert logging_settings(f"{module}:make").format == "console"
    for attribute, message in [
        ("make_async", "is an async function; use 'await asyncetl.spec.load_pipeline(...)'"),
        ("needs_argument", "must be callable without arguments"),
        ("not_a_pipeline", "returned a int, not a Pipeline"),
        ("NUMBER", "names a int, not a Pipeline or a function returning one"),
        ("nothing", f"module '{module}' has no attribute 'nothing'"),
    ]:
        with pytest.raises(ConfigError) as caught:
            build_pipeline(f"{module}:{attribute}")
        assert str(caught.value) == f"{module}:{attribute}: {message}"
    with pytest.raises(ConfigError, match="^nope_mod:make: module 'nope_mod' not found$"):
        build_pipeline("nope_mod:make")


@pytest.mark.anyio
async def test_load_pipeline_awaits_async_factories(workdir: Path) -> None:
    module = write_module(workdir, FACTORIES)
    pipeline = await load_pipeline(f"{module}:make_async")
    assert pipeline.name == "from-async-factory"
    assert isinstance(await load_pipeline(f"{module}:make"), Pipeline)
    stats = await pipeline.run()
    assert stats.records_out == 2


def test_attribute_specs_on_the_command_line(tmp_path: Path) -> None:
    module = write_module(tmp_path, FACTORIES)
    for attribute, name, records in [
        ("PIPELINE", "from-attribute", 1),
        ("make", "from-factory", 3),
        ("make_async", "from-async-factory", 2),
    ]:
        result = cli(tmp_path, "run", f"{module}:{attribute}", "--log-level", "warning")
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout.splitlines()[0].startswith(f"pipeline {name} finished in ")
        assert f"  records_out    {records}\n" in result.stdout
    result = cli(tmp_path, "validate", f"{module}:not_a_pipeline")
    assert (result.returncode, result.stderr) == (
        2,
        f"error: {module}:not_a_pipeline: returned a int, not a Pipeline\n",
    )


def test_spec_directory_is_importable(workdir: Path) -> None:
    sub = workdir / "specs"
    sub.mkdir()
    module = write_module(sub, "def keep(record):\n    return record\n")
    write_spec(sub, GOOD + f"[[transforms]]\nfunction = '{module}:keep'\n")
    assert build_pipeline("specs/pipeline.toml").transforms[0].name == f"{module}:keep"


UNOPENED = """
[pipeline]
name = "partial"

[source]
type = "postgres_cdc"
dsn = "${ASYNCETL_T_DSN}"
slot = "s"
publication = "s"
tables = ["t"]

[sink]
type = "jsonl"
path = "${ASYNCETL_T_OUT}"

[dead_letters]
type = "jsonl"
path = "dead.jsonl"
"""


@pytest.mark.anyio
async def test_parts_the_caller_does_not_open_may_name_unset_variables(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASYNCETL_T_DSN", raising=False)
    monkeypatch.delenv("ASYNCETL_T_OUT", raising=False)
    write_spec(workdir, UNOPENED)
    unset = (
        "pipeline.toml: source.dsn: environment variable ASYNCETL_T_DSN is not set; "
        "set it or write ${ASYNCETL_T_DSN:-default}"
    )
    assert spec_error(UNOPENED) == unset
    pipeline = build_pipeline("pipeline.toml", using=("dead_letters",))
    assert (pipeline.name, pipeline.source.name, pipeline.sink.name) == (
        "partial",
        "cdc",
        "jsonl_sink",
    )
    assert await pipeline.dead_letters.list("partial") == []  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as opened:
        await pipeline.run()
    assert str(opened.value) == unset
    with pytest.raises(ConfigError) as written:
        await pipeline.sink.open()
    assert str(written.value) == (
        "pipeline.toml: sink.path: environment variable ASYNCETL_T_OUT is not set; "
        "set it or write ${ASYNCETL_T_OUT:-default}"
    )
