"""The stateful stage: summaries in, decisions out, per agent, in event time.

The same :class:`Engine` serves ``vigil replay`` (fed in-process) and ``vigil run`` (fed from the
summaries topic, its state checkpointed to a changelog topic), so both decide identically on the same
events. Its whole state is JSON-safe (:meth:`Engine.agent_state` / :meth:`Engine.load_agent`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from controller.analysis.canary import CanaryAnalysis
from controller.config import Rollout
from controller.contracts.decisions import Decision
from controller.ingest.buckets import Bucket, Summary
from controller.policy.steps import RolloutPolicy
from controller.windows import EventTimeWindow

__all__ = ["AgentState", "Engine"]


class AgentState:
    """Window, analysis and policy of one agent."""

    def __init__(self, agent: str, rollout: Rollout) -> None:
        self.agent = agent
        self.rollout = rollout
        a = rollout.analysis
        self.window = EventTimeWindow(a.bucket_seconds, a.allowed_lateness, a.idle_timeout)
        self.analysis: CanaryAnalysis | None = None
        self.policy: RolloutPolicy | None = None

    def _roles(self, buckets: list[Bucket]) -> tuple[str, str] | None:
        if self.rollout.stable is not None and self.rollout.canary is not None:
            return self.rollout.stable.version, self.rollout.canary.version
        by_track: dict[str, Counter[str]] = {"stable": Counter(), "canary": Counter()}
        for b in buckets:
            if b.track in by_track:
                by_track[b.track][b.version] += b.n
        if self.policy is not None:
            # a running rollout keeps its versions until a different canary shows up
            new = [v for v in by_track["canary"] if v != self.policy.canary]
            if not new:
                return self.policy.stable, self.policy.canary
            stable = by_track["stable"].most_common(1)[0][0] if by_track["stable"] else self.policy.stable
            return stable, by_track["canary"].most_common(1)[0][0]
        if by_track["stable"] and by_track["canary"]:
            return by_track["stable"].most_common(1)[0][0], by_track["canary"].most_common(1)[0][0]
        return None

    def on_closed(self, start: int, buckets: list[Bucket]) -> list[Decision]:
        roles = self._roles(buckets)
        if roles is None:
            return []
        stable, canary = roles
        if self.policy is None or (self.policy.stable, self.policy.canary) != (stable, canary):
            self.analysis = CanaryAnalysis(stable, canary, self.rollout.analysis)
            self.policy = RolloutPolicy(self.agent, self.rollout, stable, canary)
        assert self.analysis is not None
        if self.policy.phase != "progressing":
            return []
        alarms = self.analysis.observe(start, buckets)
        decisions = self.policy.on_bucket(start + self.window.bucket_seconds, alarms, self.analysis)
        if any(d.action == "set_weight" for d in decisions):
            self.analysis.cut()  # a stratum holds one canary weight: the tables so far are fed at the old one
        return decisions

    def to_state(self) -> dict[str, Any]:
        return {
            "agent": self.agent, "window": self.window.to_state(),
            "analysis": self.analysis.to_state() if self.analysis else None,
            "policy": self.policy.to_state() if self.policy else None,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.window.load_state(state["window"])
        if state["analysis"] is not None:
            a = state["analysis"]
            self.analysis = CanaryAnalysis(a["stable"], a["canary"], self.rollout.analysis)
            self.analysis.load_state(a)
            self.policy = RolloutPolicy(self.agent, self.rollout, a["stable"], a["canary"])
            self.policy.load_state(state["policy"])


class Engine:
    """Every agent's state. Agents with a configured rollout use it; others are watched in track mode."""

    def __init__(self, rollouts: Iterable[Rollout] = (), default: Rollout | None = None,
                 track_mode: bool | None = None) -> None:
        self.rollouts = {r.agent: r for r in rollouts if r.agent}
        # Without any config every agent is watched from its events' track; with configs, only those agents.
        self.track_mode = not self.rollouts if track_mode is None else track_mode
        self.default = default or Rollout()
        self.agents: dict[str, AgentState] = {}
        self.summaries = 0

    def set_rollouts(self, rollouts: Iterable[Rollout]) -> None:
        """Replace the configured rollouts (the cluster's AgentRollouts changed). A running rollout takes the
        new settings at its next bucket; a new canary version starts a new analysis there."""
        self.rollouts = {r.agent: r for r in rollouts if r.agent}
        for agent, st in self.agents.items():
            r = self.rollouts.get(agent)
            if r is not None and r != st.rollout:
                st.rollout = r
                if st.policy is not None:
                    st.policy.rollout = r

    def state_for(self, agent: str) -> AgentState | None:
        st = self.agents.get(agent)
        if st is None:
            rollout = self.rollouts.get(agent)
            if rollout is None:
                if not self.track_mode:
                    return None
                rollout = self.default
            st = self.agents[agent] = AgentState(agent, rollout)
        return st

    def apply(self, summary: Summary) -> list[Decision]:
        """Merge one summary and decide on every bucket it lets the watermark close."""
        self.summaries += 1
        st = self.state_for(summary.agent)
        if st is None or not st.window.add(summary):
            return []
        return self._close(st, flush=False)

    def flush(self) -> list[Decision]:
        """Close every open bucket of every agent (end of a finite input)."""
        out: list[Decision] = []
        for st in self.agents.values():
            out.extend(self._close(st, flush=True))
        return out

    def _close(self, st: AgentState, flush: bool) -> list[Decision]:
        out: list[Decision] = []
        for start, buckets in st.window.close(flush=flush):
            out.extend(st.on_closed(start, buckets))
        return out

    def agent_state(self, agent: str) -> dict[str, Any]:
        return self.agents[agent].to_state()

    def load_agent(self, state: dict[str, Any]) -> None:
        st = self.state_for(state["agent"])
        if st is not None:
            st.load_state(state)
