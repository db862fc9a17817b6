"""The state stage (consumer group ``<group>.state``): summaries topic to decisions.

It runs the :class:`~controller.engine.core.Engine` for the agents of its partitions, carries decisions
out on the cluster (or, in Kubernetes mode, leaves that to the leader's actuator), sends them to the
decisions topic, and checkpoints each touched agent's state to the changelog topic
(:mod:`controller.runtime.changelog`) before it commits. A worker that starts, restarts or gains a
partition first restores that partition's agents from the changelog, so no state is lost and nothing is
counted twice by this stage. With each checkpoint it also publishes the verdict document of every agent
whose verdict changed (:func:`controller.engine.verdict.published`) to the compacted verdicts topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from controller.actuators.protocol import ClusterBackend, apply_decision
from controller.config import Rollout
from controller.contracts import checkpoint
from controller.contracts.decisions import Decision, encode, log_fields
from controller.contracts.verdict import encode as encode_verdict
from controller.engine.core import Engine
from controller.engine.verdict import published
from controller.ingest.buckets import Summary
from controller.runtime.changelog import decode_state, encode_state, read_latest
from controller.runtime.kafka import group_consumer
from controller.runtime.kafka import producer as make_producer
from controller.runtime.settings import PipelineSettings
from controller.runtime.stats import PipelineStats

__all__ = ["DecisionHook", "StateStage"]

log = logging.getLogger("vigil.pipeline")


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
        latest = await read_latest(s.bootstrap, s.changelog_topic, partitions, options=s.client_options())
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
        run = st.runs.get(decision.version) if st is not None else None
        if self.cluster is not None and st is not None and run is not None:
            await apply_decision(self.cluster, decision, run.policy.stable, st.rollout.scale_canary_to_zero)
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
        self.producer = make_producer(s.bootstrap, options=s.client_options())
        self.consumer = group_consumer(s.bootstrap, f"{s.group}.state", options=s.client_options(),
                                       session_timeout_ms=s.session_timeout_ms)
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
