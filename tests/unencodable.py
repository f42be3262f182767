"""Refused records that JSON cannot hold, and the dead letters every store keeps of them."""

from __future__ import annotations

from typing import Any

from asyncetl import DeadLetterStore, ListSource, NullSink, Pipeline, Transform

UNENCODABLE = "asyncetl_unencodable_record"


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


#: Record 0 is good; every other one is refused by the transform, whose error quotes it.
RECORDS: list[dict[str, Any]] = [
    {"id": 0},
    {"id": 1, "deep": nested(300)},
    {"id": 2, "big": 2**70},
    {"id": 3, "text": "lone \udc80 surrogate"},
    {"id": 4, "text": "nul \x00 char"},
]


def refuse(record: dict[str, Any]) -> dict[str, Any]:
    if record["id"]:
        raise ValueError(f"refused {record.get('text', record['id'])}")
    return record


def pipeline(store: DeadLetterStore) -> Pipeline:
    return Pipeline(
        "p",
        ListSource(RECORDS),
        NullSink(),
        [Transform(refuse, name="refuse", on_error="dead_letter")],
        dead_letters=store,
    )


def text(record: dict[str, Any], reason: str) -> dict[str, str]:
    return {UNENCODABLE: repr(record), "reason": reason}


#: (record, error) of each letter, in order.
EXPECTED = [
    (text(RECORDS[1], "Recursion limit reached"), "refused 1"),
    (text(RECORDS[2], "Integer exceeds 64-bit range"), "refused 2"),
    (
        text(RECORDS[3], "str is not valid UTF-8: surrogates not allowed"),
        "refused lone \\udc80 surrogate",
    ),
    ({"id": 4, "text": "nul \x00 char"}, "refused nul \\x00 char"),
]


async def check_every_letter_is_kept(store: DeadLetterStore) -> None:
    """A run that refuses every unencodable record goes on, and the store keeps each."""
    stats = await pipeline(store).run()
    assert (stats.records_in, stats.records_out, stats.dead_lettered, stats.position) == (
        5,
        1,
        4,
        5,
    )
    async with store:
        letters = await store.list("p")
    assert [(letter.record, letter.error) for letter in letters] == EXPECTED
    assert {(letter.stage, letter.error_type, letter.position) for letter in letters} == {
        ("refuse", "ValueError", 5)
    }
