"""Synthetic traffic for the engine: events built directly, one poll per second of event time, with outcomes
drawn from a seeded numpy generator, pre-aggregated with :class:`Aggregator` as the ingest stage does; and
the engine helpers fed by it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controller.config import Rollout, parse_rollout
from controller.contracts.decisions import Decision
from controller.contracts.events import Event, Interaction
from controller.engine.core import Engine
from controller.ingest.aggregator import Aggregator
from controller.ingest.buckets import Summary

T0 = 1_700_000_000  # a whole second, so bucket boundaries fall on T0 + k
CHANNELS = ("sms", "webchat", "voice")


@dataclass
class Traffic:
    """Per second of event time, the events of that second (one poll each)."""

    polls: list[list[Event]] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        return [e for poll in self.polls for e in poll]

    def ids(self, track: str, outcome: str | None = None) -> set[str]:
        return {e.data.conversation_id for e in self.events  # type: ignore[misc]
                if e.data.track == track and (outcome is None or e.data.outcome == outcome)}


def traffic(seed: int, seconds: int, *, agent: str = "bot", rate: float = 50.0, share: float = 0.1,
            escalation: tuple[float, float] = (0.10, 0.10), resolution: tuple[float, float] | None = None,
            incident: tuple[int, int, float, float] | None = None, versions: tuple[str, str] = ("v1", "v2"),
            start: int = T0, tenants: tuple[str, ...] = ()) -> Traffic:
    """Poisson(rate) events per second; a share of them on the canary.

    ``escalation`` is the (stable, canary) escalation probability; ``resolution``, when given, the
    resolution probability (the rest is abandoned), otherwise every non-escalated interaction is resolved
    or, with probability 0.05, abandoned. ``incident = (from_s, to_s, escalation, canary_share)`` sets the
    escalation probability of both versions and the canary share during that span. ``tenants``, when
    given, are assigned in turn.
    """
    rng = np.random.default_rng(seed)
    out = Traffic()
    serial = 0
    for s in range(seconds):
        p_esc, p_share = escalation, share
        if incident is not None and incident[0] <= s < incident[1]:
            p_esc, p_share = (incident[2], incident[2]), incident[3]
        poll = []
        for _ in range(int(rng.poisson(rate))):
            canary = bool(rng.random() < p_share)
            side = int(canary)
            u = float(rng.random())
            if resolution is not None:
                outcome = "resolved" if u < resolution[side] else "abandoned"
            else:
                p = p_esc[side]
                outcome = "escalated" if u < p else ("abandoned" if u < p + 0.05 else "resolved")
            serial += 1
            track = "canary" if canary else "stable"
            poll.append(Event(time=start + s + float(rng.random()), data=Interaction(
                agent=agent, version=versions[side], track=track, channel=CHANNELS[int(rng.integers(3))],
                tenant=tenants[serial % len(tenants)] if tenants else None,
                conversation_id=f"{agent}-{track}-{serial}", outcome=outcome,  # type: ignore[arg-type]
                latency_ms=float(rng.lognormal(6.5, 0.4)), output_tokens=float(rng.poisson(120)))))
        out.polls.append(poll)
    return out


def summaries(*streams: Traffic, sources: int = 1, tenants: dict[str, int] | None = None) -> list[Summary]:
    """The summaries of the streams' polls, second by second, spread round-robin over ``sources``."""
    aggs = [Aggregator(tenants=tenants) for _ in range(sources)]
    offsets = [0] * sources
    out: list[Summary] = []
    for second in range(max(len(s.polls) for s in streams)):
        for stream in streams:
            for e in stream.polls[second] if second < len(stream.polls) else []:
                i = offsets.index(min(offsets)) if sources > 1 else 0
                aggs[i].add(e, str(i), offsets[i])
                offsets[i] += 1
        for agg in aggs:
            out.extend(agg.drain())
    return out


def run(engine: Engine, items: Iterable[Summary], flush: bool = True) -> list[Decision]:
    out: list[Decision] = []
    for p in items:
        out.extend(engine.apply(p))
    if flush:
        out.extend(engine.flush())
    return out


def rollout(agent: str = "bot", steps: list[dict[str, Any]] | None = None, **analysis: Any) -> Rollout:
    spec: dict[str, Any] = {"agent": agent, "stable": {"version": "v1"}, "canary": {"version": "v2"}}
    if steps is not None:
        spec["steps"] = steps
    if analysis:
        spec["analysis"] = analysis
    return parse_rollout({"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout", "spec": spec})


def configured() -> Engine:
    steps = [{"setWeight": 20}, {"pause": {"duration": "1m"}},
             {"setWeight": 60}, {"pause": {"duration": "1m"}}]
    # bot-b's steps pass on time alone, so that it is promoted within its four minutes of traffic
    return Engine([rollout("bot-a"), rollout("bot-b", steps=steps, promotion={"evidence": False})])
