"""One worker of the scale-out test: a Kafka group member appending into PostgreSQL.

Run as ``python -m tests.connectors.kafka.worker BOOTSTRAP TOPIC GROUP DSN WORKER``;
it reads until stopped (SIGTERM stops it gracefully, SIGKILL at once) and appends
each message ``{"k": …, "seq": …}`` as the row ``(k, seq, worker)`` of the table
``applied``, whose serial ``id`` then records the order in which versions were applied.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import anyio

from asyncetl import Pipeline, Transform
from asyncetl.connectors.kafka import KafkaSource
from asyncetl.connectors.postgres import PostgresSink


async def main(bootstrap: str, topic: str, group: str, dsn: str, worker: int) -> None:
    def tag(record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "worker": worker}

    source = KafkaSource(bootstrap, [topic], group=group, poll_timeout=0.2, session_timeout=2.0)
    sink = PostgresSink(dsn, "applied", mode="append")
    run = Pipeline(
        f"worker{worker}", source, sink, [Transform(tag)], max_batch_size=2000, max_batch_age=0.1
    )
    async with anyio.create_task_group() as tg:

        async def stop_on_sigterm() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    run.stop()
                    return

        tg.start_soon(stop_on_sigterm)
        await run.run()
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    bootstrap, topic, group, dsn, worker = sys.argv[1:]
    anyio.run(main, bootstrap, topic, group, dsn, int(worker))
