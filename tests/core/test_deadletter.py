"""Records JSON cannot hold become dead letters all the same: their repr, and why."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from asyncetl import MemoryDeadLetterStore, replay_dead_letters, to_jsonable
from asyncetl.core.deadletter import deep_repr
from tests.unencodable import RECORDS, UNENCODABLE, check_every_letter_is_kept, nested, pipeline

pytestmark = pytest.mark.anyio


def test_deep_repr_is_repr_for_containers_and_what_repr_shows_of_a_container_in_itself() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    mapping: dict[str, Any] = {}
    mapping["self"] = mapping
    shared = [2]
    for value in [
        [1, {"a": (2,), "b": [], 3: ()}, "q\udc80\x00", (1, 2), None, 1.5],
        looped,
        {"m": mapping, "t": (looped,)},
        [shared, shared],
    ]:
        assert deep_repr(value) == repr(value)


def test_deep_repr_goes_deeper_than_recursion_allows() -> None:
    assert deep_repr(nested(5000)) == "[" * 5001 + "]" * 5001  # 5000 lists around []


def test_to_jsonable_keeps_the_repr_and_the_reason_of_what_json_cannot_hold() -> None:
    assert to_jsonable({"big": -(2**64)}) == {
        UNENCODABLE: "{'big': -18446744073709551616}",
        "reason": "Integer exceeds 64-bit range",
    }
    assert to_jsonable({"s": "\ud800"}) == {
        UNENCODABLE: "{'s': '\\ud800'}",
        "reason": "str is not valid UTF-8: surrogates not allowed",
    }
    assert to_jsonable({"deep": nested(200)}) == {"deep": nested(200)}


async def test_a_letter_kept_as_text_is_never_replayed_and_stays() -> None:
    store = MemoryDeadLetterStore()
    with capture_logs():
        await check_every_letter_is_kept(store)
        result = await replay_dead_letters(pipeline(store))
    assert result.removed == []
    cannot = (
        "the record was stored as its Python repr (JSON cannot hold it); it cannot be "
        "replayed, only read"
    )
    assert [(f.letter.record.get("id"), f.error) for f in result.failed] == [  # type: ignore[union-attr]
        (None, cannot),
        (None, cannot),
        (None, cannot),
        (4, "ValueError: refused nul \x00 char"),
    ]
    assert len(await store.list("p")) == len(RECORDS) - 1
