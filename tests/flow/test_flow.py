"""Flows: validation before running, bounded DAG execution, skips, retries, resume, TOML, CLI."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import orjson
import pytest

from asyncetl.cli import main
from asyncetl.core.errors import ConfigError
from asyncetl.flow import Flow, JsonFileFlowStore, MemoryFlowStore, Step, StepFunction
from asyncetl.spec import load_flow

REPO = Path(__file__).resolve().parents[2]


class Work:
    """Step functions that record what ran, when, and how many at once."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.running = 0
        self.most = 0
        self.failures: dict[str, int] = {}

    def step(self, name: str, sleep: float = 0.02) -> StepFunction:
        async def run() -> None:
            self.log.append(f"start {name}")
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                await anyio.sleep(sleep)
                if self.failures.get(name, 0) > 0:
                    self.failures[name] -= 1
                    raise RuntimeError(f"{name} broke")
            finally:
                self.running -= 1
            self.log.append(f"end {name}")

        return run


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [("a", ()), ("b", ("a",)), ("a", ()), ("b", ())],
            "flow f: step names must be unique; duplicated: a, b",
        ),
        (
            [("a", ()), ("b", ("a", "x")), ("c", ("y",))],
            "flow f: 'b' depends on unknown step 'x'; 'c' depends on unknown step 'y' "
            "(steps are a, b, c)",
        ),
        ([("a", ("c",)), ("b", ("a",)), ("c", ("b",)), ("d", ())], "flow f: steps form a cycle: "),
        ([("a", ("a",))], "flow f: steps form a cycle: a -> a (each depends on the next)"),
    ],
)
def test_bad_graphs_are_rejected_before_anything_runs(
    steps: list[tuple[str, tuple[str, ...]]], message: str
) -> None:
    work = Work()
    with pytest.raises(ConfigError) as caught:
        Flow("f", [Step(name, work.step(name), depends_on=deps) for name, deps in steps])
    assert str(caught.value).startswith(message)
    assert work.log == []


def test_a_cycle_is_named_in_dependency_order() -> None:
    work = Work()
    with pytest.raises(ConfigError) as caught:
        Flow(
            "f",
            [
                Step("a", work.step("a"), depends_on=("c",)),
                Step("b", work.step("b"), depends_on=("a",)),
                Step("c", work.step("c"), depends_on=("b",)),
            ],
        )
    cycle = str(caught.value).removeprefix("flow f: steps form a cycle: ").split(" (")[0]
    names = cycle.split(" -> ")
    assert names[0] == names[-1] and sorted(names[:-1]) == ["a", "b", "c"]
    depends = {"a": "c", "b": "a", "c": "b"}
    assert all(depends[x] == y for x, y in itertools.pairwise(names))


# -- running ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_independent_steps_run_concurrently_up_to_max_parallel() -> None:
    work = Work()
    flow = Flow("f", [Step(f"s{n}", work.step(f"s{n}", 0.05)) for n in range(5)], max_parallel=2)
    result = await flow.run()
    assert result.ok
    assert work.most == 2
    assert sorted(line for line in work.log if line.startswith("end")) == [
        f"end s{n}" for n in range(5)
    ]


@pytest.mark.anyio
async def test_a_step_starts_only_after_all_its_dependencies_succeeded() -> None:
    work = Work()
    flow = Flow(
        "f",
        [
            Step("load", work.step("load"), depends_on=("extract", "schema")),
            Step("extract", work.step("extract", 0.05)),
            Step("schema", work.step("schema", 0.01)),
        ],
    )
    await flow.run()
    assert work.log.index("start load") > work.log.index("end extract")
    assert work.log.index("start load") > work.log.index("end schema")
    assert list(flow.steps) in (["extract", "schema", "load"], ["schema", "extract", "load"])


@pytest.mark.anyio
async def test_dependents_of_a_failed_step_are_skipped_and_other_branches_go_on() -> None:
    work = Work()
    work.failures["load"] = 99
    flow = Flow(
        "f",
        [
            Step("extract", work.step("extract")),
            Step(
                "load",
                work.step("load"),
                depends_on=("extract",),
                max_tries=2,
                retry_base_delay=0.01,
            ),
            Step("aggregate", work.step("aggregate"), depends_on=("load",)),
            Step("publish", work.step("publish"), depends_on=("aggregate", "audit")),
            Step("audit", work.step("audit"), depends_on=("extract",)),
        ],
    )
    result = await flow.run()
    summary = {n: (s.status, s.attempts, s.error) for n, s in result.steps.items()}
    assert summary == {
        "extract": ("succeeded", 1, None),
        "load": ("failed", 2, "RuntimeError: load broke"),
        "audit": ("succeeded", 1, None),
        "aggregate": ("skipped", 0, "not run: dependency 'load' failed"),
        "publish": ("skipped", 0, "not run: dependency 'aggregate' skipped"),
    }
    assert "start aggregate" not in work.log and "start publish" not in work.log
    assert not result.ok


@pytest.mark.anyio
async def test_retries_and_timeouts_per_step() -> None:
    work = Work()
    work.failures["flaky"] = 2
    flow = Flow(
        "f",
        [
            Step("flaky", work.step("flaky"), max_tries=3, retry_base_delay=0.01),
            Step("slow", work.step("slow", 5), max_tries=2, timeout=0.05, retry_base_delay=0.01),
        ],
    )
    result = await flow.run()
    assert (result.steps["flaky"].status, result.steps["flaky"].attempts) == ("succeeded", 3)
    slow = result.steps["slow"]
    assert (slow.status, slow.attempts, slow.error) == (
        "failed",
        2,
        "TimeoutError: the step took longer than its timeout",
    )


@pytest.mark.anyio
async def test_resume_reruns_only_what_did_not_succeed(tmp_path: Path) -> None:
    work = Work()
    work.failures["b"] = 1
    steps = [
        Step("a", work.step("a")),
        Step("b", work.step("b"), depends_on=("a",)),
        Step("c", work.step("c"), depends_on=("b",)),
        Step("d", work.step("d")),
    ]
    store = JsonFileFlowStore(tmp_path / "state.json")
    first = await Flow("f", steps).run(store)
    assert (
        first.with_status("succeeded"),
        first.with_status("failed"),
        first.with_status("skipped"),
    ) == (["a", "d"], ["b"], ["c"])
    work.log.clear()
    second = await Flow("f", steps).run(JsonFileFlowStore(tmp_path / "state.json"), resume=True)
    assert second.ok and second.resumed and second.run_id == first.run_id
    assert work.log == ["start b", "end b", "start c", "end c"]
    assert second.steps["b"].attempts == 2
    saved = orjson.loads((tmp_path / "state.json").read_bytes())
    assert [run["run_id"] for run in saved["runs"]] == [first.run_id]
    assert {n: s["status"] for n, s in saved["runs"][0]["steps"].items()} == dict.fromkeys(
        "abcd", "succeeded"
    )
    fresh = await Flow("f", steps).run(store)
    assert fresh.run_id != first.run_id and not fresh.resumed


@pytest.mark.anyio
async def test_a_cancelled_run_marks_running_steps_pending_for_resume() -> None:
    work = Work()
    store = MemoryFlowStore()
    steps = [
        Step("quick", work.step("quick", 0)),
        Step("long", work.step("long", 60)),
        Step("after", work.step("after"), depends_on=("long",)),
    ]
    with anyio.move_on_after(0.2):
        await Flow("f", steps).run(store)
    latest = await store.latest("f")
    assert latest is not None
    assert {n: s.status for n, s in latest.steps.items()} == {
        "quick": "succeeded",
        "long": "pending",
        "after": "pending",
    }
    work.log.clear()
    steps[1] = Step("long", work.step("long", 0))
    assert (await Flow("f", steps).run(store, resume=True)).ok
    assert work.log == ["start long", "end long", "start after", "end after"]


def test_subset_keeps_the_named_steps_and_their_dependencies() -> None:
    work = Work()
    flow = Flow(
        "f",
        [
            Step("a", work.step("a")),
            Step("b", work.step("b"), depends_on=("a",)),
            Step("c", work.step("c"), depends_on=("b",)),
            Step("d", work.step("d")),
        ],
    )
    assert sorted(flow.subset(["c"]).steps) == ["a", "b", "c"]
    with pytest.raises(ConfigError, match=r"^flow f: no step named 'x'; steps are "):
        flow.subset(["x"])


# -- TOML and CLI -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_example_flow_runs_from_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOW_WORKDIR", str(tmp_path / "work"))
    spec = load_flow(REPO / "examples/flow.toml")
    assert spec.state == "example.flow.json"
    assert {n: s.depends_on for n, s in spec.flow.steps.items()} == {
        "extract": (),
        "load": ("extract",),
        "audit": ("extract",),
        "aggregate": ("load",),
    }
    result = await spec.flow.run(JsonFileFlowStore(tmp_path / "state.json"))
    assert result.ok
    assert orjson.loads((tmp_path / "work/summary.json").read_bytes()) == {
        "days": 7,
        "cents": sum((n * 37) % 1000 for n in range(1000)),
    }
    assert orjson.loads((tmp_path / "work/audit.json").read_bytes()) == {"orders": 1000}


async def nothing() -> None:
    """A step that does nothing (named by the TOML tests as tests.flow.test_flow:nothing)."""


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            '[[steps]]\nname = "a"\nrun = "tests.backfill.jobs:noop"\n',
            "steps.a.params: noop does not accept these params: missing a required argument: "
            "'partition'",
        ),
        (
            '[[steps]]\nname = "a"\nrun = "tests.flow.test_flow:nothing"\ndepends_on = ["b"]\n',
            "flow f: 'a' depends on unknown step 'b' (steps are a)",
        ),
        (
            '[[steps]]\nname = "a"\nrun = "tests.flow.test_flow:nothing"\nmax_tries = 0\n',
            "step 'a': max_tries: must be a positive integer, not 0",
        ),
        ('[[steps]]\nname = "a"\n', "steps[0]: every step needs a name and a run"),
        ('[flow]\nname = "f"\n', "steps: needs at least one [[steps]] table"),
    ],
)
def test_toml_mistakes_name_the_file(tmp_path: Path, steps: str, message: str) -> None:
    path = tmp_path / "f.toml"
    path.write_text(steps)
    with pytest.raises(ConfigError) as caught:
        load_flow(path)
    assert str(caught.value) == f"{path}: {message}"


def test_cli_runs_a_flow_and_rejects_unknown_step_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOW_WORKDIR", str(tmp_path / "work"))
    state = str(tmp_path / "state.json")
    flow = str(REPO / "examples/flow.toml")
    assert main(["flow", flow, "--step", "nope", "--state", state]) == 2
    assert capsys.readouterr().err == (
        "error: flow example: no step named 'nope'; steps are extract, load, audit, aggregate\n"
    )
    assert main(["flow", flow, "--step", "audit", "--state", state]) == 0
    out = capsys.readouterr().out
    assert "│ audit   │ succeeded │" in out and "load" not in out
    assert main(["flow", flow, "--state", state, "--resume"]) == 0
    assert "(resumed)" in capsys.readouterr().out


@pytest.mark.anyio
async def test_a_step_can_be_a_pipeline_spec(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    (tmp_path / "copy.toml").write_text(f"""
[pipeline]
name = "copy"
[source]
type = "jsonl"
path = "{tmp_path}/in.jsonl"
[sink]
type = "jsonl"
path = "{tmp_path}/out.jsonl"
""")
    (tmp_path / "flow.toml").write_text(f"""
[[steps]]
name = "copy"
run = "{tmp_path}/copy.toml"
[[steps]]
name = "after"
run = "tests.flow.test_flow:nothing"
depends_on = ["copy"]
""")
    result = await load_flow(tmp_path / "flow.toml").flow.run()
    assert result.ok
    assert (tmp_path / "out.jsonl").read_text() == '{"n":1}\n{"n":2}\n'
