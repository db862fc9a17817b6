"""vigil's verdict on one rollout, for the tools teams already run.

* Argo Rollouts: its Web metric provider calls ``GET /api/v1/verdict/{namespace}/{name}`` and evaluates
  ``successCondition: result.healthy == true`` and ``failureCondition: result.rollback == true`` (with
  ``jsonPath: "{$}"``); while neither holds the measurement is inconclusive.
* Flagger: ``POST /api/v1/flagger/rollback`` answers 200 (roll back) only when vigil would roll the canary
  back, and ``POST /api/v1/flagger/confirm-promotion`` answers 200 (promote) only when the canary is healthy
  with enough samples; any other status makes Flagger wait.

The verdict is read from the engine's live state, never recomputed: it is what vigil itself acts on.
An agent in track mode with several canary versions judged at once gets one verdict per canary
(:func:`canary_verdict`, listed in ``canaries``); the document's top-level fields answer for the worst of
them, so Argo Rollouts and Flagger roll back when any canary must be, and promote only when every one is
healthy. A rolled-back canary counts until it is dropped (600 s of event time without its traffic).
A rollout is found by the ``AgentRollout`` name (and namespace, when the rollout has one), else by agent.
``updated`` is the event time up to which the agent's buckets are closed (None before the first one).

The state stage also publishes each agent's document (:func:`published`) to the compacted verdicts topic,
so that every replica can answer for agents it does not own (:mod:`controller.runtime.verdicts`). The
document is :class:`controller.contracts.verdict.VerdictDocument`, encoded with msgspec.
"""

from __future__ import annotations

import math

import msgspec

from controller.contracts.verdict import CanaryVerdict, Verdict, VerdictDocument, evidence_of
from controller.engine.core import AgentState, CanaryRun, Engine

__all__ = ["CanaryVerdict", "Verdict", "VerdictDocument", "canary_verdict", "find_agent", "published", "verdict",
           "verdict_of"]


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


def canary_verdict(run: CanaryRun) -> CanaryVerdict:
    """The verdict on one canary version, from its analysis and policy."""
    pol, ana = run.policy, run.analysis
    alarms = sorted(n for n, t in ana.tests.items() if t.alarm)
    acting = [n for n in alarms if ana.is_critical(n) and ana.has_enough_samples(n)]
    samples = max((t.counts[0] for t in ana.tests.values()), default=0)
    # enough to pass a step: the samples to act on every critical test (a category share's samples are its field's
    # trials, error types, a rare tool: they need not hold it up), and the data to have caught a harm of the
    # promotion's size (what RolloutPolicy waits for before a step passes)
    enough = bool(ana.tests) and all(ana.has_enough_samples(n) for n in ana.tests
                                     if ana.is_critical(n) and not ana.is_categorical(n)) \
        and not ana.promotion_gaps()
    rollback = pol.phase == "rolled_back" or bool(acting)
    v: Verdict = "unhealthy" if rollback else ("healthy" if enough and not alarms else "inconclusive")
    return CanaryVerdict(canary=pol.canary, verdict=v, healthy=v == "healthy", rollback=rollback, phase=pol.phase,
                         canary_samples=samples, enough_samples=enough, alarms=alarms, canary_weight=pol.weight,
                         evidence=[evidence_of(e) for e in ana.evidence(acting or alarms or None)])


_SEVERITY = {"unhealthy": 0, "inconclusive": 1, "healthy": 2, "unknown": 3}


def verdict_of(st: AgentState, namespace: str | None, name: str) -> VerdictDocument:
    """The verdict document of one agent's state, answering for ``namespace/name``: with several canary versions
    judged, for the worst of them (any rollback is the agent's), with each one's verdict in ``canaries``."""
    closed = st.window.closed_until
    out = VerdictDocument(namespace=namespace, name=name, agent=st.agent,
                          updated=closed if math.isfinite(closed) else None)
    runs = list(st.runs.values())
    if not runs:
        return out  # no bucket with both versions closed yet
    each = [canary_verdict(r) for r in runs]
    # sorted() is stable: among equally bad canaries, the earliest judged answers
    worst, run = sorted(zip(each, runs, strict=True), key=lambda p: _SEVERITY[p[0].verdict])[0]
    out = msgspec.structs.replace(
        out, verdict=worst.verdict, healthy=all(c.healthy for c in each), rollback=any(c.rollback for c in each),
        phase=worst.phase, stable=run.policy.stable, canary=worst.canary, canary_weight=worst.canary_weight,
        canary_samples=worst.canary_samples, enough_samples=worst.enough_samples, alarms=worst.alarms,
        evidence=worst.evidence)
    return out if len(each) == 1 else msgspec.structs.replace(out, canaries=each)
