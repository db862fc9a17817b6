"""vigil's verdict on one rollout, for the tools teams already run.

* Argo Rollouts: its Web metric provider calls ``GET /api/v1/verdict/{namespace}/{name}`` and evaluates
  ``successCondition: result.healthy == true`` and ``failureCondition: result.rollback == true`` (with
  ``jsonPath: "{$}"``); while neither holds the measurement is inconclusive.
* Flagger: ``POST /api/v1/flagger/rollback`` answers 200 (roll back) only when vigil would roll the canary
  back, and ``POST /api/v1/flagger/confirm-promotion`` answers 200 (promote) only when the canary is healthy
  with enough samples; any other status makes Flagger wait.

The verdict is read from the engine's live state, never recomputed: it is what vigil itself acts on.
A rollout is found by the ``AgentRollout`` name (and namespace, when the rollout has one), else by agent.
``updated`` is the event time up to which the agent's buckets are closed (None before the first one).

The state stage also publishes each agent's document (:func:`published`) to the compacted verdicts topic,
so that every replica can answer for agents it does not own (:mod:`controller.runtime.verdicts`). The
document is :class:`controller.contracts.verdict.VerdictDocument`, encoded with msgspec.
"""

from __future__ import annotations

import math

import msgspec

from controller.contracts.verdict import Verdict, VerdictDocument, evidence_of
from controller.engine.core import AgentState, Engine

__all__ = ["Verdict", "VerdictDocument", "find_agent", "published", "verdict", "verdict_of"]


def find_agent(engine: Engine, namespace: str | None, name: str) -> AgentState | None:
    """The agent state of the rollout ``namespace/name`` (or of the agent called ``name``)."""
    for agent, rollout in engine.rollouts.items():
        ns = getattr(rollout, "namespace", None)
        if rollout.name == name and (namespace is None or ns is None or ns == namespace):
            return engine.agents.get(agent)
    return engine.agents.get(name)


def verdict(engine: Engine | None, namespace: str | None, name: str) -> VerdictDocument | None:
    """The verdict document, or None when vigil knows no such rollout."""
    st = None if engine is None else find_agent(engine, namespace, name)
    return None if st is None else verdict_of(st, namespace, name)


def published(st: AgentState) -> VerdictDocument:
    """The document of one agent as the verdicts topic carries it: for its rollout's namespace and name (the
    agent's name when the rollout has none)."""
    return verdict_of(st, st.rollout.namespace, st.rollout.name or st.agent)


def verdict_of(st: AgentState, namespace: str | None, name: str) -> VerdictDocument:
    """The verdict document of one agent's state, answering for ``namespace/name``."""
    closed = st.window.closed_until
    out = VerdictDocument(namespace=namespace, name=name, agent=st.agent,
                          updated=closed if math.isfinite(closed) else None)
    if st.policy is None or st.analysis is None:
        return out  # no bucket with both versions closed yet
    pol, ana = st.policy, st.analysis
    alarms = sorted(n for n, t in ana.tests.items() if t.alarm)
    acting = [n for n in alarms if ana.is_critical(n) and ana.has_enough_samples(n)]
    samples = max((t.counts[0] for t in ana.tests.values()), default=0)
    # a category share's samples are its field's trials (error types, a rare tool): they need not hold it up
    enough = bool(ana.tests) and all(ana.has_enough_samples(n) for n in ana.tests
                                     if ana.is_critical(n) and not ana.is_categorical(n))
    rollback = pol.phase == "rolled_back" or bool(acting)
    v: Verdict = "unhealthy" if rollback else ("healthy" if enough and not alarms else "inconclusive")
    return msgspec.structs.replace(
        out, verdict=v, healthy=v == "healthy", rollback=rollback, phase=pol.phase, stable=pol.stable,
        canary=pol.canary, canary_weight=pol.weight, canary_samples=samples, enough_samples=enough, alarms=alarms,
        evidence=[evidence_of(e) for e in ana.evidence(acting or alarms or None)])
