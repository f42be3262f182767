"""The store contract, for the memory, SQLite and PostgreSQL stores alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from asyncetl.backfill import BackfillStore, Scope, date_partitions
from asyncetl.connectors.postgres.backfill_store import PostgresBackfillStore
from asyncetl.core.errors import TransientError

from .conftest import StoreFactory

pytestmark = pytest.mark.anyio

DAYS = date_partitions("2024-01-01", "2024-01-05", "day")
SCOPE = Scope.of(DAYS)


@asynccontextmanager
async def opened(store: BackfillStore) -> AsyncIterator[BackfillStore]:
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def test_register_adds_pending_partitions_once(stores: StoreFactory) -> None:
    async with opened(stores()) as store:
        await store.register("bf", DAYS, "none")
        await store.register("bf", DAYS[:2], "none")
        states = await store.states("bf")
    assert [(s.key, s.kind, s.status, s.attempts) for s in states] == [
        (p.key, "day", "pending", 0) for p in DAYS
    ]


async def test_claims_follow_the_order_and_stay_in_scope(stores: StoreFactory) -> None:
    async with opened(stores()) as store:
        await store.register("bf", DAYS, "none")
        await store.register("other", DAYS, "none")
        narrow = Scope("day", DAYS[1].ordinal, DAYS[3].ordinal)
        oldest = await store.claim("bf", narrow, worker="w", lease=30, newest_first=False)
        newest = await store.claim("bf", narrow, worker="w", lease=30, newest_first=True)
        middle = await store.claim("bf", narrow, worker="w", lease=30, newest_first=True)
        none = await store.claim("bf", narrow, worker="w", lease=30, newest_first=True)
        states = {s.key: s for s in await store.states("bf")}
        others = await store.states("other")
    assert (oldest, newest, middle, none) == ("2024-01-02", "2024-01-04", "2024-01-03", None)
    assert [states[k].status for k in sorted(states)] == [
        "pending",
        "running",
        "running",
        "running",
        "pending",
    ]
    assert states["2024-01-02"].worker == "w"
    assert states["2024-01-02"].lease_until is not None
    assert states["2024-01-02"].started_at is not None
    assert {s.status for s in others} == {"pending"}


async def test_finish_records_the_outcome_only_for_the_holder(stores: StoreFactory) -> None:
    async with opened(stores()) as store:
        await store.register("bf", DAYS, "none")
        key = await store.claim("bf", SCOPE, worker="w1", lease=30, newest_first=False)
        assert key == "2024-01-01"
        assert not await store.finish("bf", key, worker="w2", outcome="succeeded", tries=1)
        assert await store.finish(
            "bf", key, worker="w1", outcome="failed", tries=3, error="ValueError: boom"
        )
        assert not await store.finish("bf", key, worker="w1", outcome="succeeded", tries=1)
        state = (await store.states("bf", SCOPE))[0]
    assert (state.status, state.attempts, state.error, state.worker) == (
        "failed",
        3,
        "ValueError: boom",
        None,
    )
    assert state.finished_at is not None


async def test_an_expired_lease_is_reclaimed_and_its_holder_loses_it(
    stores: StoreFactory,
) -> None:
    async with opened(stores()) as first, opened(stores()) as second:
        await first.register("bf", DAYS[:2], "none")
        scope = Scope.of(DAYS[:2])
        held = await first.claim("bf", scope, worker="dead", lease=0.3, newest_first=False)
        other = await second.claim("bf", scope, worker="alive", lease=30, newest_first=False)
        assert (held, other) == ("2024-01-01", "2024-01-02")
        assert await second.claim("bf", scope, worker="alive", lease=30, newest_first=False) is None
        await anyio.sleep(0.4)
        assert (await first.states("bf"))[0].stale()
        taken = await second.claim("bf", scope, worker="alive", lease=30, newest_first=False)
        assert taken == "2024-01-01"
        assert await first.renew("bf", ["2024-01-01"], worker="dead", lease=30) == set()
        assert not await first.finish(
            "bf", "2024-01-01", worker="dead", outcome="succeeded", tries=1
        )
        assert await second.finish("bf", "2024-01-01", worker="alive", outcome="succeeded", tries=1)
        state = (await second.states("bf"))[0]
    assert (state.status, state.attempts) == ("succeeded", 1)


async def test_renewal_keeps_a_lease_alive(stores: StoreFactory) -> None:
    async with opened(stores()) as store:
        await store.register("bf", DAYS[:1], "none")
        scope = Scope.of(DAYS[:1])
        key = await store.claim("bf", scope, worker="w", lease=0.4, newest_first=False)
        for _ in range(4):
            await anyio.sleep(0.2)
            assert await store.renew("bf", [key or "", "2024-09-09"], worker="w", lease=0.4) == {
                "2024-01-01"
            }
        assert await store.claim("bf", scope, worker="x", lease=30, newest_first=False) is None


async def test_resets_send_failed_or_all_partitions_back_to_pending(
    stores: StoreFactory,
) -> None:
    async with opened(stores()) as store:
        await store.register("bf", DAYS[:3], "none")
        scope = Scope.of(DAYS[:3])
        for outcome in ("succeeded", "failed"):
            key = await store.claim("bf", scope, worker="w", lease=30, newest_first=False)
            await store.finish("bf", key or "", worker="w", outcome=outcome, tries=2, error=None)
        await store.claim("bf", scope, worker="w", lease=30, newest_first=False)  # still running

        await store.register("bf", DAYS[:3], "failed")
        after_failed = [(s.status, s.attempts) for s in await store.states("bf")]
        await store.register("bf", DAYS[:3], "all")
        after_all = [(s.status, s.attempts) for s in await store.states("bf")]
    assert after_failed == [("succeeded", 2), ("pending", 2), ("running", 0)]
    # A partition running under a live lease is never reset.
    assert after_all == [("pending", 2), ("pending", 2), ("running", 0)]


async def test_concurrent_claims_never_hand_out_a_partition_twice(stores: StoreFactory) -> None:
    partitions = date_partitions("2024-01-01", "2024-01-30", "day")
    scope = Scope.of(partitions)
    claimed: list[str] = []
    async with opened(stores()) as setup:
        await setup.register("bf", partitions, "none")

    async def worker(name: str) -> None:
        async with opened(stores()) as store:
            while True:
                key = await store.claim("bf", scope, worker=name, lease=30, newest_first=False)
                if key is None:
                    if all(s.status == "running" for s in await store.states("bf")):
                        return
                    continue  # skipped a row another worker had locked: look again
                claimed.append(key)

    async with anyio.create_task_group() as tg:
        for n in range(4):
            tg.start_soon(worker, f"w{n}")
    assert sorted(claimed) == [p.key for p in partitions]


async def test_an_unreachable_postgres_store_is_one_transient_error() -> None:
    store = PostgresBackfillStore("postgresql://postgres:secret@127.0.0.1:1/nowhere", retries=0)
    with pytest.raises(TransientError) as caught:
        await store.open()
    message = str(caught.value)
    assert message.startswith(
        "cannot reach PostgreSQL at 127.0.0.1:1 while connecting as 'postgres': "
    )
    assert "secret" not in message
