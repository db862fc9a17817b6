"""The changelog topic: each agent's engine state, checkpointed by the state stage as a versioned record
(:mod:`controller.contracts.checkpoint`), keyed by agent, on the partition number of the agent's summaries.

The topic is compacted on a real cluster; :func:`read_latest` keeps the last record of each key anyway, so
a broker that does not compact (the embedded one) gives the same state, only read for longer.
"""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from controller.contracts import checkpoint
from controller.runtime.kafka import reader

__all__ = ["decode_state", "encode_state", "read_latest"]


def encode_state(state: dict[str, Any]) -> bytes:
    """One agent's engine state as a versioned checkpoint (:mod:`controller.contracts.checkpoint`)."""
    return checkpoint.encode(checkpoint.Checkpoint(agent=state["agent"], window=state["window"],
                                                   canaries=state["canaries"], track=state["track"]))


def decode_state(raw: bytes) -> dict[str, Any]:
    """The engine state of a checkpoint, migrated from an older version; CheckpointError when unreadable."""
    return checkpoint.decode(raw).state()


async def read_latest(bootstrap: str, topic: str, partitions: set[int], *,
                      options: dict[str, Any]) -> dict[bytes, tuple[int, bytes]]:
    """The last record of every key in ``partitions`` of ``topic`` (up to the end when called), with its
    partition; a record with no key or no value (a tombstone) is passed over."""
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer = reader(bootstrap, options=options)
    await consumer.start()
    latest: dict[bytes, tuple[int, bytes]] = {}
    try:
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = [tp for tp in tps if end[tp] > 0]
        while remaining:
            for tp, records in (await consumer.getmany(*tps, timeout_ms=500)).items():
                for r in records:
                    if r.key is not None and r.value is not None:
                        latest[r.key] = (tp.partition, r.value)
            remaining = [tp for tp in remaining if await consumer.position(tp) < end[tp]]
    finally:
        await consumer.stop()
    return latest
