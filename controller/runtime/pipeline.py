"""The live pipeline on Kafka, in two consumer groups (:mod:`controller.runtime.ingest`,
:mod:`controller.runtime.state`), put together by :func:`run_pipeline`.

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
from collections.abc import Callable

from controller.actuators.protocol import ClusterBackend
from controller.config import Rollout
from controller.ingest.aggregator import tenant_caps
from controller.runtime.changelog import decode_state, encode_state
from controller.runtime.dlq import DLQ_REASON_HEADER, DLQ_SOURCE_HEADER
from controller.runtime.ingest import IngestStage
from controller.runtime.kafka import ensure_topics
from controller.runtime.settings import PipelineSettings
from controller.runtime.state import DecisionHook, StateStage
from controller.runtime.stats import PipelineStats

# the stages and their settings are used together: importable from here, where they are put together
__all__ = ["DLQ_REASON_HEADER", "DLQ_SOURCE_HEADER", "IngestStage", "PipelineSettings", "PipelineStats", "StateStage",
           "decode_state", "encode_state", "run_pipeline"]


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
