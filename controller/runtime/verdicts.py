"""Every agent's latest verdict, in every replica, read from the compacted verdicts topic.

The replicas of one deployment share the state consumer group, so each replica's engine holds only the agents
of its partitions. The state stage publishes each agent's verdict document to ``<group>.verdicts`` (keyed by
agent, compacted) whenever it changes. :class:`VerdictView` reads that topic in every replica with a consumer in
no group: it assigns itself every partition, reads them from the beginning, and keeps the latest document per
agent (a record with no value, a tombstone, deletes the agent; a record that is no
:class:`~controller.contracts.verdict.VerdictDocument` is skipped and counted). So the verdict endpoints of any
replica can answer for any agent (:mod:`controller.http.server`); the replica owning the agent answers from its
engine instead, which is fresher by at most a checkpoint interval.

Memory holds one document per agent, whatever the length of the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from controller.contracts import verdict
from controller.runtime.kafka import reader

__all__ = ["VerdictView"]

log = logging.getLogger("vigil.verdicts")


class VerdictView:
    """The latest verdict document of every agent on ``topic``; :meth:`run` keeps it current."""

    def __init__(self, bootstrap: str, topic: str, poll_timeout_ms: int = 200, refresh_interval: float = 30.0,
                 options: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.options = dict(options or {})
        """aiokafka security keyword arguments (see :meth:`PipelineSettings.client_options`)."""
        self.topic = topic
        self.poll_timeout_ms = poll_timeout_ms
        self.refresh_interval = refresh_interval
        """Seconds between two looks for partitions added to the topic."""
        self.docs: dict[str, dict[str, Any]] = {}
        """Agent -> its latest document."""
        self.invalid = 0
        """Records skipped because their key or value could not be read (the agent keeps its last document)."""
        self.ready = asyncio.Event()
        """Set once the topic has been read up to the end offsets it had when it was first assigned."""
        self._names: dict[str, set[str]] = {}  # rollout name -> agents whose document carries it
        self._next: dict[TopicPartition, int] = {}

    # -- the table -----------------------------------------------------------------------------------------

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic: the latest document of the agent ``key`` (None: delete it)."""
        if key is None:
            self.invalid += 1
            return
        agent = key.decode("utf-8", "replace")
        doc: Any = None
        if value is not None:
            try:
                verdict.decode(value)  # a verdict document (controller.contracts.verdict), else skipped
                doc = msgspec.json.decode(value)
            except msgspec.DecodeError:
                doc = None
            if not isinstance(doc, dict):
                self.invalid += 1
                log.warning("skipped an unreadable verdict record of agent %r on %s", agent, self.topic)
                return
        old = self.docs.pop(agent, None)
        if old is not None:
            agents = self._names.get(old["name"])
            if agents is not None:
                agents.discard(agent)
                if not agents:
                    del self._names[old["name"]]
        if doc is not None:
            self.docs[agent] = doc
            self._names.setdefault(doc["name"], set()).add(agent)

    def by_agent(self, agent: str) -> dict[str, Any] | None:
        return self.docs.get(agent)

    def lookup(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The document of the rollout ``namespace/name``, else of the agent called ``name``: the same rule as
        :func:`controller.engine.verdict.find_agent` (a namespace missing on either side matches any)."""
        for agent in sorted(self._names.get(name, ())):
            ns = self.docs[agent].get("namespace")
            if namespace is None or ns is None or ns == namespace:
                return self.docs[agent]
        return self.docs.get(name)

    def __len__(self) -> int:
        return len(self.docs)

    # -- the consumer --------------------------------------------------------------------------------------

    async def _partitions(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        # what AIOKafkaConsumer.topics() reads, with the partitions (its public answer has only the names)
        cluster = await consumer._client.fetch_all_metadata()
        return {TopicPartition(self.topic, p) for p in cluster.partitions_for_topic(self.topic) or ()}

    async def _assign(self, consumer: AIOKafkaConsumer, tps: set[TopicPartition]) -> None:
        consumer.assign(sorted(tps))
        for tp in tps:
            if tp in self._next:
                consumer.seek(tp, self._next[tp])  # assign() forgets positions; keep ours
            else:
                await consumer.seek_to_beginning(tp)
                self._next[tp] = 0

    @staticmethod
    async def _caught_up(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
        for tp, n in end.items():
            if await consumer.position(tp) < n:
                return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Read the topic until ``stop`` is set (waiting for the topic to exist first)."""
        consumer = reader(self.bootstrap, options=self.options)
        try:
            await consumer.start()
            loop = asyncio.get_running_loop()
            assigned: set[TopicPartition] = set()
            end: dict[TopicPartition, int] = {}
            looked = -float("inf")
            while not stop.is_set():
                if loop.time() - looked >= (self.refresh_interval if assigned else 0.5):
                    looked = loop.time()
                    tps = await self._partitions(consumer)
                    if tps - assigned:
                        if not assigned:
                            end = await consumer.end_offsets(sorted(tps))
                        assigned |= tps
                        await self._assign(consumer, assigned)
                        log.info("reading verdicts of %d partition(s) of %s", len(assigned), self.topic)
                if not assigned:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
                    continue
                batch = await consumer.getmany(timeout_ms=self.poll_timeout_ms)
                for tp, records in batch.items():
                    for r in records:
                        self.apply(r.key, r.value)
                    self._next[tp] = records[-1].offset + 1
                if not self.ready.is_set() and await self._caught_up(consumer, end):
                    self.ready.set()
                    log.info("read %d verdicts from %s", len(self.docs), self.topic)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
