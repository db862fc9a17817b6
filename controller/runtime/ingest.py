"""The ingest stage (consumer group ``<group>.ingest``): events topic to summaries topic.

It reads the events topic in batches, decodes each record with msgspec, sends an invalid one to the
dead-letter topic (:mod:`controller.runtime.dlq`), pre-aggregates the rest into bucket summaries
(:class:`~controller.ingest.aggregator.Aggregator`) and sends those to the summaries topic, keyed by agent.
A batch's offsets are committed only once every send of the batch is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from controller.contracts.events import InvalidEvent, decode_record
from controller.ingest.aggregator import Aggregator
from controller.runtime.dlq import dead_letter, reason_class
from controller.runtime.kafka import group_consumer
from controller.runtime.kafka import producer as make_producer
from controller.runtime.settings import PipelineSettings
from controller.runtime.stats import PipelineStats

__all__ = ["IngestStage"]

log = logging.getLogger("vigil.pipeline")


class _Joined(ConsumerRebalanceListener):  # type: ignore[misc]
    """Sets ``ready`` once the consumer has joined its group and been given its partitions."""

    def __init__(self, ready: asyncio.Event, revoked: Callable[[], None]) -> None:
        self.ready = ready
        self.revoked = revoked

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.ready.set()


class IngestStage:
    """Events topic to summaries topic (and the dead-letter topic)."""

    def __init__(self, settings: PipelineSettings, stats: PipelineStats, bucket_seconds: int = 1,
                 tenants: dict[str, int] | None = None) -> None:
        self.settings = settings
        self.stats = stats
        self.bucket_seconds = bucket_seconds
        self.tenants = tenants or {}  # agents whose buckets are split by tenant (see Aggregator)
        self.ready = asyncio.Event()
        self._next_offset: dict[TopicPartition, int] = {}
        self._agg: Aggregator | None = None

    def set_tenants(self, tenants: dict[str, int]) -> None:
        """Agents whose buckets are split by tenant, from now on (the rollouts changed)."""
        self.tenants = dict(tenants)
        if self._agg is not None:
            self._agg.tenant_caps = dict(tenants)

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        consumer = group_consumer(s.bootstrap, f"{s.group}.ingest", options=s.client_options(),
                                  session_timeout_ms=s.session_timeout_ms)
        consumer.subscribe([s.topic], listener=_Joined(self.ready, self._next_offset.clear))
        producer = make_producer(s.bootstrap, options=s.client_options())
        agg = self._agg = Aggregator(self.bucket_seconds, self.tenants)
        try:
            await producer.start()
            await consumer.start()
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=s.poll_timeout_ms, max_records=s.max_batch)
                if not batch:
                    continue
                sends: list[Awaitable[Any]] = []
                assigned = consumer.assignment()
                self._next_offset = {tp: o for tp, o in self._next_offset.items() if tp in assigned}
                for tp, records in batch.items():
                    source = str(tp.partition)
                    self._next_offset[tp] = records[-1].offset + 1
                    for r in records:
                        try:
                            event = decode_record(r.value, dict(r.headers), r.timestamp)
                        except Exception as exc:  # one bad record must never stop the stream
                            reason = exc.reason if isinstance(exc, InvalidEvent) else \
                                f"unexpected {type(exc).__name__} while decoding"
                            if not isinstance(exc, InvalidEvent):
                                log.exception("record %s/%d/%d", tp.topic, tp.partition, r.offset)
                            self.stats.invalid[reason_class(reason)] += 1
                            value, key, headers = dead_letter(r, reason)
                            sends.append(await producer.send(s.dlq_topic, value, key=key, headers=headers))
                            continue
                        agg.add(event, source, r.offset)
                        self.stats.events += 1
                        self.stats.last_event_time = max(self.stats.last_event_time, event.time)
                for p in agg.drain(await self._progress(consumer, agg)):
                    sends.append(await producer.send(s.summaries_topic, msgspec.msgpack.encode(p),
                                                     key=p.agent.encode()))
                    self.stats.summaries_sent += 1
                await asyncio.gather(*sends)  # every effect of the batch is durable before its commit
                await consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
                self.stats.ingest_batches += 1
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await producer.stop()


    async def _progress(self, consumer: AIOKafkaConsumer, agg: Aggregator) -> dict[str, float | None]:
        """How far each assigned partition with unread events has been read in event time, None for one
        with nothing unread (see :meth:`Aggregator.drain`)."""
        highs = agg.highs
        if not highs:
            return {}
        out: dict[str, float | None] = {}
        assigned = list(consumer.assignment())
        # asked of the broker, not taken from the last fetch: a fetch that returned nothing for a
        # partition says nothing of its backlog
        ends = await consumer.end_offsets(assigned) if assigned else {}
        for tp in assigned:
            source = str(tp.partition)
            # the consumer's own position may run ahead of what it returned (it moves a record batch at
            # a time), so the offset after the last record returned is what counts
            position = self._next_offset.get(tp)
            if position is None:
                position = await consumer.position(tp)
            backlog = position < ends[tp]
            if backlog:
                # unread events of unknown time: hold the watermark where this source was left, or at
                # the start of time when nothing of it was read yet
                out[source] = highs.get(source, 0.0)
            elif source in highs:
                out[source] = None
        return out
