"""The live pipeline on Kafka, in two consumer groups.

* **Ingest** (group ``<group>.ingest``) reads the events topic in batches, decodes each record with
  msgspec, sends invalid ones with their original bytes and a reason header to the dead-letter topic,
  pre-aggregates the rest into one-second bucket summaries and sends those to the summaries topic,
  keyed by agent. It commits a batch's offsets only once every send of the batch is acknowledged.
* **State** (group ``<group>.state``) reads the summaries, runs the :class:`~controller.engine.core.Engine`
  for the agents of its partitions, carries decisions out on the cluster, sends them to the decisions
  topic, and checkpoints each touched agent's state to the changelog topic (same partition number,
  keyed by agent) before it commits. A worker that starts, restarts or gains a partition first
  restores that partition's agents from the changelog, so no state is lost and nothing is counted
  twice by this stage. With each checkpoint it also publishes the verdict document of every agent whose
  verdict changed (:func:`controller.engine.verdict.published`) to the compacted verdicts topic, keyed by agent,
  which every replica reads (:mod:`controller.runtime.verdicts`) to answer for the agents it does not own.

Delivery is at least once end to end: a crash of ingest between its sends and its commit may count a
poll twice (exact duplicates are dropped), and a crash of the state stage between acting and
checkpointing may repeat a decision, which is idempotent on the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from controller.actuators.protocol import ClusterBackend, apply_decision
from controller.config import Rollout
from controller.contracts import checkpoint
from controller.contracts.decisions import Decision, encode, log_fields
from controller.contracts.events import InvalidEvent, decode_record
from controller.contracts.verdict import encode as encode_verdict
from controller.engine.core import Engine
from controller.engine.verdict import published
from controller.ingest.aggregator import Aggregator, tenant_caps
from controller.ingest.buckets import Summary
from controller.runtime.kafka import client_options, ensure_topics

__all__ = ["IngestStage", "PipelineSettings", "PipelineStats", "StateStage", "run_pipeline"]

log = logging.getLogger("vigil.pipeline")

DLQ_REASON_HEADER = "vigil-dlq-reason"
DLQ_SOURCE_HEADER = "vigil-dlq-source"


@dataclass(frozen=True)
class PipelineSettings:
    bootstrap: str
    """Kafka bootstrap servers, ``host:port[,host:port]``."""
    topic: str = "vigil.events"
    """The topic agents publish interaction events to."""
    summaries_topic: str = ""
    """Internal topic of bucket summaries, keyed by agent; default ``<group>.summaries``."""
    changelog_topic: str = ""
    """Internal changelog topic the state stage checkpoints to (same partitions); default ``<group>.state``."""
    decisions_topic: str = "vigil.decisions"
    """Every decision, as one JSON object per message, keyed by agent."""
    verdicts_topic: str = ""
    """Compacted topic of each agent's latest verdict document (JSON), keyed by agent; default ``<group>.verdicts``."""
    group: str = "vigil"
    """Consumer group prefix: ``<group>.ingest`` and ``<group>.state``."""
    partitions: int = 3
    """Partitions of the topics vigil creates when they are missing."""
    session_timeout_ms: int = 6000
    """Consumer session timeout; small so a group forms quickly and a dead worker is noticed soon."""
    max_batch: int = 5000
    """Records per poll at most."""
    poll_timeout_ms: int = 200
    """How long one poll waits for records."""
    checkpoint_interval: float = 1.0
    """Seconds between state checkpoints (offsets are committed with each checkpoint)."""
    security_protocol: str = "PLAINTEXT"
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL`` (TLS trusts the system's CA certificates)."""
    sasl_mechanism: str | None = None
    """``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` with SASL."""
    sasl_username: str | None = None
    """SASL user name."""
    sasl_password: str | None = field(default=None, repr=False)
    """SASL password (never printed)."""

    def _check_security(self) -> None:
        try:
            self.client_options()
        except ValueError as exc:
            raise ValueError(f"invalid Kafka security settings: {exc}") from None

    def client_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments for this cluster's security settings."""
        return client_options(self.security_protocol, self.sasl_mechanism, self.sasl_username, self.sasl_password)

    def __post_init__(self) -> None:
        self._check_security()
        # derived from the group, so two deployments with their own groups never share internal topics
        if not self.summaries_topic:
            object.__setattr__(self, "summaries_topic", f"{self.group}.summaries")
        if not self.changelog_topic:
            object.__setattr__(self, "changelog_topic", f"{self.group}.state")
        if not self.verdicts_topic:
            object.__setattr__(self, "verdicts_topic", f"{self.group}.verdicts")

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"


@dataclass
class PipelineStats:
    """Counters read at scrape time by the metrics collector."""

    events: int = 0
    summaries_sent: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    summaries: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    checkpoints: int = 0
    verdicts: int = 0
    restored_agents: int = 0
    checkpoints_unreadable: int = 0
    ingest_batches: int = 0
    last_event_time: float = 0.0


def encode_state(state: dict[str, Any]) -> bytes:
    """One agent's engine state as a versioned checkpoint (:mod:`controller.contracts.checkpoint`)."""
    return checkpoint.encode(checkpoint.Checkpoint(agent=state["agent"], window=state["window"],
                                                   analysis=state["analysis"], policy=state["policy"]))


def decode_state(raw: bytes) -> dict[str, Any]:
    """The engine state of a checkpoint, migrated from an older version; CheckpointError when unreadable."""
    return checkpoint.decode(raw).state()


def _consumer(settings: PipelineSettings, group: str, *topics: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=settings.bootstrap, group_id=group, enable_auto_commit=False,
        **settings.client_options(),
        auto_offset_reset="earliest", session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.session_timeout_ms // 6),
        rebalance_timeout_ms=max(settings.session_timeout_ms, 10000),
    )


def _producer(settings: PipelineSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=5,
                            max_request_size=8 * 1024 * 1024, **settings.client_options())


def _reason_class(reason: str) -> str:
    """A low-cardinality label for a DLQ reason (the path is dropped; values never reach a label)."""
    head = reason.split(" - at ")[0]
    for key in ("malformed JSON", "missing required field", "no event time", "empty record", "Invalid enum",
                "Expected", "unexpected"):
        if head.startswith(key):
            return key.lower().replace(" ", "_")
    return "contract_violation"


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
        consumer = _consumer(s, f"{s.group}.ingest")
        consumer.subscribe([s.topic], listener=_Joined(self.ready, self._next_offset.clear))
        producer = _producer(s)
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
                            self.stats.invalid[_reason_class(reason)] += 1
                            headers = [*r.headers, (DLQ_REASON_HEADER, reason.encode()),
                                       (DLQ_SOURCE_HEADER, f"{tp.topic}/{tp.partition}/{r.offset}".encode())]
                            # Kafka refuses a record with neither key nor value: keep it as an empty value
                            value = r.value if r.value is not None or r.key is not None else b""
                            sends.append(await producer.send(s.dlq_topic, value, key=r.key, headers=headers))
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


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: StateStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.stage.checkpoint()
        self.stage.drop({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.stage.joined = True
        # Records of a partition must not be applied before its agents are restored: pause them here and
        # let the run loop restore, then resume, before its next poll.
        if assigned:
            assert self.stage.consumer is not None
            self.stage.consumer.pause(*assigned)
            self.stage.to_restore.update(assigned)


DecisionHook = Callable[[Decision], Awaitable[None] | None]


class StateStage:
    """Summaries topic to decisions, with the engine's state checkpointed to the changelog topic."""

    _summary = msgspec.msgpack.Decoder(Summary)

    def __init__(self, settings: PipelineSettings, rollouts: list[Rollout], cluster: ClusterBackend | None,
                 stats: PipelineStats, on_decision: DecisionHook | None = None,
                 track_mode: bool | None = None) -> None:
        self.settings = settings
        self.rollouts = {r.agent: r for r in rollouts}
        self.engine = Engine(rollouts, track_mode=track_mode)
        self.cluster = cluster
        self.stats = stats
        self.on_decision = on_decision
        self.partition_of: dict[str, int] = {}
        self.dirty: set[str] = set()
        self.pending: dict[TopicPartition, int] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.to_restore: set[TopicPartition] = set()
        self.joined = False
        self.ready = asyncio.Event()
        self._last_checkpoint = 0.0
        # per agent: the verdict last published (JSON, without "updated") and the closed_until it was built at
        self._verdicts: dict[str, tuple[float, bytes]] = {}
        self._verdict_due: set[str] = set()  # restored agents: publish at the next checkpoint

    async def restore(self, partitions: set[int]) -> None:
        """Load the last checkpoint of every agent of ``partitions`` from the changelog."""
        s = self.settings
        tps = [TopicPartition(s.changelog_topic, p) for p in sorted(partitions)]
        reader = AIOKafkaConsumer(bootstrap_servers=s.bootstrap, enable_auto_commit=False, group_id=None,
                                  **s.client_options())
        await reader.start()
        latest: dict[bytes, tuple[int, bytes]] = {}
        try:
            reader.assign(tps)
            end = await reader.end_offsets(tps)
            await reader.seek_to_beginning(*tps)
            remaining = [tp for tp in tps if end[tp] > 0]
            while remaining:
                for tp, records in (await reader.getmany(*tps, timeout_ms=500)).items():
                    for r in records:
                        if r.key is not None and r.value is not None:
                            latest[r.key] = (tp.partition, r.value)
                remaining = [tp for tp in remaining if await reader.position(tp) < end[tp]]
        finally:
            await reader.stop()
        for key, (partition, raw) in latest.items():
            agent = key.decode(errors="replace")
            try:
                state = decode_state(raw)
            except checkpoint.NewerCheckpointError:
                raise  # a downgrade: stop rather than misread or drop the rollouts' state
            except checkpoint.CheckpointError as exc:
                # not a checkpoint (written by something else): the agent starts afresh; nothing else can read it
                self.stats.checkpoints_unreadable += 1
                log.error("unreadable checkpoint of agent %r in %s/%d: %s", agent, s.changelog_topic, partition,
                          exc, extra={"agent": agent, "topic": s.changelog_topic, "partition": partition})
                continue
            self.engine.agents.pop(agent, None)
            self.engine.load_agent(state)
            self.partition_of[agent] = partition
            self._verdicts.pop(agent, None)
            self._verdict_due.add(agent)
            self.stats.restored_agents += 1
        log.info("restored %d agents of partitions %s from %s", len(latest), sorted(partitions),
                 s.changelog_topic)

    def drop(self, partitions: set[int]) -> None:
        for agent in [a for a, p in self.partition_of.items() if p in partitions]:
            self.engine.agents.pop(agent, None)
            del self.partition_of[agent]
            self._verdicts.pop(agent, None)
            self._verdict_due.discard(agent)
        self.pending = {tp: o for tp, o in self.pending.items() if tp.partition not in partitions}
        self.to_restore = {tp for tp in self.to_restore if tp.partition not in partitions}

    async def checkpoint(self) -> None:
        """Write the touched agents' state, then commit the offsets that produced it."""
        if self.producer is None or self.consumer is None or not (self.dirty or self.pending or self._verdict_due):
            return
        sends = []
        for agent in self.dirty:
            if agent in self.engine.agents:
                state = encode_state(self.engine.agent_state(agent))
                sends.append(await self.producer.send(self.settings.changelog_topic, state, key=agent.encode(),
                                                      partition=self.partition_of[agent]))
        for agent in self.dirty | self._verdict_due:
            doc = self._changed_verdict(agent)
            if doc is not None:
                sends.append(await self.producer.send(self.settings.verdicts_topic, doc, key=agent.encode()))
        await asyncio.gather(*sends)
        if self.pending:
            await self.consumer.commit(dict(self.pending))
        self.dirty.clear()
        self.pending.clear()
        self._verdict_due.clear()
        self.stats.checkpoints += 1
        self._last_checkpoint = time.monotonic()

    def _changed_verdict(self, agent: str) -> bytes | None:
        """The agent's verdict document to publish (JSON), or None when it has not changed since the last one
        published. It is built only when a bucket has closed since then (or the agent was just restored)."""
        st = self.engine.agents.get(agent)
        if st is None:
            return None
        closed = st.window.closed_until
        last = self._verdicts.get(agent)
        if last is not None and last[0] == closed:
            return None
        doc = published(st)
        body = encode_verdict(msgspec.structs.replace(doc, updated=None))  # what changed, besides the time
        self._verdicts[agent] = (closed, body)
        if last is not None and last[1] == body:
            return None
        self.stats.verdicts += 1
        return encode_verdict(doc)

    async def _act(self, decision: Decision) -> None:
        self.stats.decisions[decision.action] += 1
        st = self.engine.agents.get(decision.agent)
        # with no cluster here (Kubernetes mode) the leader's actuator acts, from the decisions topic
        if self.cluster is not None and st is not None and st.policy is not None:
            await apply_decision(self.cluster, decision, st.policy.stable, st.rollout.scale_canary_to_zero)
        assert self.producer is not None
        await self.producer.send_and_wait(self.settings.decisions_topic, encode(decision),
                                          key=decision.agent.encode())
        if self.on_decision is not None:
            result = self.on_decision(decision)
            if asyncio.iscoroutine(result):
                await result
        log.info("decision %s %s %s: %s", decision.agent, decision.action, decision.version, decision.reason,
                 extra=log_fields(decision, st.rollout.name if st is not None else None))

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self.producer = _producer(s)
        self.consumer = _consumer(s, f"{s.group}.state")
        self.consumer.subscribe([s.summaries_topic], listener=_Rebalance(self))
        try:
            await self.producer.start()
            await self.consumer.start()
            while not stop.is_set():
                if self.to_restore:
                    assigned = self.to_restore & self.consumer.assignment()
                    self.to_restore.clear()
                    await self.restore({tp.partition for tp in assigned})
                    self.consumer.resume(*assigned)
                batch = await self.consumer.getmany(timeout_ms=s.poll_timeout_ms, max_records=s.max_batch)
                if self.joined and not self.to_restore:
                    self.ready.set()  # joined and restored (a worker with no partitions is ready too)
                decisions: list[Decision] = []
                for tp, records in batch.items():
                    for r in records:
                        try:
                            summary = self._summary.decode(r.value)
                        except (msgspec.DecodeError, TypeError):
                            # an internal topic, but one foreign or corrupt record must not stop the stage
                            self.stats.invalid["bad_summary"] += 1
                            log.error("skipped an undecodable summary at %s/%d/%d", tp.topic, tp.partition,
                                      r.offset)
                            continue
                        self.stats.summaries += 1
                        self.partition_of[summary.agent] = tp.partition
                        decisions.extend(self.engine.apply(summary))
                        self.dirty.add(summary.agent)
                    self.pending[tp] = records[-1].offset + 1
                for d in decisions:
                    await self._act(d)
                if decisions or time.monotonic() - self._last_checkpoint >= s.checkpoint_interval:
                    await self.checkpoint()
            await self.checkpoint()
        finally:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            with contextlib.suppress(Exception):
                await self.producer.stop()


async def run_pipeline(settings: PipelineSettings, rollouts: list[Rollout], cluster: ClusterBackend | None,
                       stop: asyncio.Event, stats: PipelineStats | None = None,
                       on_decision: DecisionHook | None = None,
                       started: Callable[[IngestStage, StateStage], None] | None = None,
                       track_mode: bool | None = None) -> PipelineStats:
    """Create the topics if missing and run both stages until ``stop`` is set."""
    stats = stats or PipelineStats()
    p = settings.partitions
    await ensure_topics(settings.bootstrap, {
        settings.topic: p, settings.dlq_topic: p, settings.summaries_topic: p, settings.changelog_topic: p,
        settings.verdicts_topic: p, settings.decisions_topic: 1},
        configs={settings.changelog_topic: {"cleanup.policy": "compact"},
                 settings.verdicts_topic: {"cleanup.policy": "compact"}}, options=settings.client_options())
    sizes = {r.analysis.bucket_seconds for r in rollouts} or {1}
    if len(sizes) > 1:
        raise ValueError("all rollouts of one worker must share spec.analysis.bucketSeconds")
    ingest = IngestStage(settings, stats, bucket_seconds=sizes.pop(), tenants=tenant_caps(rollouts))
    state = StateStage(settings, rollouts, cluster, stats, on_decision, track_mode=track_mode)
    if started is not None:
        started(ingest, state)
    tasks = [asyncio.create_task(ingest.run(stop), name="vigil-ingest"),
             asyncio.create_task(state.run(stop), name="vigil-state")]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()  # a stage that failed fails the worker
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return stats
