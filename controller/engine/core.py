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
from controller.contracts.decisions import Decision, iso
from controller.ingest.buckets import Bucket, Summary
from controller.policy.steps import RolloutPolicy
from controller.windows import EventTimeWindow

__all__ = ["ADMIT_BUCKETS", "CANARY_IDLE", "MAX_CANARIES", "MAX_CANDIDATES", "AgentState", "CanaryRun", "Engine"]


#: In track mode, a canary version gets an analysis only once it has had traffic in this many closed buckets (within
#: :data:`CANARY_IDLE` of each other): a stray event, or a burst of them in one bucket, starts nothing.
ADMIT_BUCKETS = 3
#: Seconds of event time without traffic after which a track-mode canary version (or a candidate) is dropped: long
#: enough that a sparse canary (an interaction a minute) keeps its evidence, short enough that a version gone for
#: good frees its slot. A version that comes back later starts a new analysis.
CANARY_IDLE = 600.0
#: Canary versions judged at once per agent. Each keeps the full alpha of its rollout, so this also bounds how many
#: false-alarm chances a healthy agent offers at a time. A version admitted beyond it takes the slot of a finished
#: (rolled back or promoted) one, else it is refused: its events are ignored and counted, with one ``alert``.
MAX_CANARIES = 8
#: Canary versions counted towards admission at once. A new one takes the place of the one seen in fewest buckets
#: (then longest ago) among those not seen in the current bucket; when every one was, the new one is not counted.
#: Versions are taken busiest first in each bucket, so that one-off versions do not crowd out a real canary.
MAX_CANDIDATES = 32


class CanaryRun:
    """The analysis and policy of one canary version against the stable version, and when it last had traffic."""

    __slots__ = ("analysis", "policy", "seen")

    def __init__(self, analysis: CanaryAnalysis, policy: RolloutPolicy, seen: float | None) -> None:
        self.analysis = analysis
        self.policy = policy
        self.seen = seen  # start of the last bucket with this canary's traffic (track mode); None: not tracked

    @property
    def canary(self) -> str:
        return self.policy.canary


class AgentState:
    """Window, and per canary version its analysis and policy, of one agent.

    With a configured rollout (``spec.stable`` and ``spec.canary``) there is one canary, as configured. In track
    mode every canary version (events with ``track: canary``) is judged on its own against the stable version
    (the busiest ``track: stable`` version, kept while it has traffic): its decisions carry its version, and a
    rollback of one does not stop the others. See :data:`ADMIT_BUCKETS`, :data:`CANARY_IDLE`,
    :data:`MAX_CANARIES` for when a version gets, loses or is refused an analysis.
    """

    def __init__(self, agent: str, rollout: Rollout) -> None:
        self.agent = agent
        self.rollout = rollout
        a = rollout.analysis
        self.window = EventTimeWindow(a.bucket_seconds, a.allowed_lateness, a.idle_timeout)
        self.stable: str | None = None
        self.runs: dict[str, CanaryRun] = {}  # canary version -> its run, in order of admission
        # track mode: canary versions not judged yet -> [buckets seen in, start of the last one, refused (0/1)]
        self.candidates: dict[str, list[float]] = {}
        self.unjudged_events = 0  # canary events of versions with no analysis (not admitted yet, or refused)
        self.refused = 0  # times a canary version was refused an analysis for want of a slot
        self.full_alerted = False  # the alert of a refusal was sent, and no slot has freed since

    @property
    def analysis(self) -> CanaryAnalysis | None:
        """The first canary's analysis (the only one with a configured rollout); None before there is one."""
        run = next(iter(self.runs.values()), None)
        return None if run is None else run.analysis

    @property
    def policy(self) -> RolloutPolicy | None:
        """The first canary's policy (the only one with a configured rollout); None before there is one."""
        run = next(iter(self.runs.values()), None)
        return None if run is None else run.policy

    def _configured(self) -> tuple[str, str] | None:
        if self.rollout.stable is not None and self.rollout.canary is not None:
            return self.rollout.stable.version, self.rollout.canary.version
        return None

    def _new_run(self, stable: str, canary: str, seen: float | None) -> CanaryRun:
        return CanaryRun(CanaryAnalysis(stable, canary, self.rollout.analysis),
                         RolloutPolicy(self.agent, self.rollout, stable, canary), seen)

    def on_closed(self, start: int, buckets: list[Bucket]) -> list[Decision]:
        out: list[Decision] = []
        pair = self._configured()
        if pair is not None:
            stable, canary = pair
            run = next(iter(self.runs.values()), None)
            if run is None or (run.policy.stable, run.policy.canary) != pair or len(self.runs) > 1:
                self.runs = {canary: self._new_run(stable, canary, None)}
                self.stable = stable
        else:
            out.extend(self._track(start, buckets))
        t = start + self.window.bucket_seconds
        for run in list(self.runs.values()):
            if run.policy.phase != "progressing":
                continue
            alarms = run.analysis.observe(start, buckets)
            decisions = run.policy.on_bucket(t, alarms, run.analysis)
            if any(d.action == "set_weight" for d in decisions):
                run.analysis.cut()  # a stratum holds one canary weight: the tables so far are fed at the old one
            out.extend(decisions)
        return out

    def _track(self, start: int, buckets: list[Bucket]) -> list[Decision]:
        """Track mode: the stable version, and which canary versions are judged, as of this bucket."""
        stables: Counter[str] = Counter()
        canaries: Counter[str] = Counter()
        for b in buckets:
            if b.track == "stable":
                stables[b.version] += b.n
            elif b.track == "canary":
                canaries[b.version] += b.n
        # the stable version is kept while it has traffic; when only others do, the busiest is the new stable
        # and every canary's analysis starts afresh against it (as a new stable always did)
        if stables and (self.stable is None or self.stable not in stables):
            stable = self.stable = stables.most_common(1)[0][0]
            self.runs = {v: self._new_run(stable, v, r.seen) for v, r in self.runs.items() if v != stable}
            self.candidates.pop(stable, None)
            self.full_alerted = False
        for v in canaries:
            run = self.runs.get(v)
            if run is not None:
                run.seen = start
        for v, run in list(self.runs.items()):
            if run.seen is None:
                run.seen = start  # restored from a checkpoint that did not know: counted from here
            elif start - run.seen > CANARY_IDLE:
                del self.runs[v]
                self.full_alerted = False
        for v, c in list(self.candidates.items()):
            if start - c[1] > CANARY_IDLE:
                del self.candidates[v]
        out: list[Decision] = []
        # busiest first: a real canary has more events in a bucket than a stray version
        unjudged = sorted(((v, n) for v, n in canaries.items() if v not in self.runs and v != self.stable),
                          key=lambda vn: (-vn[1], vn[0]))
        self.unjudged_events += sum(n for _, n in unjudged)
        # versions already counted first, so that a newcomer only displaces one not seen in this bucket
        known = [v for v, _ in unjudged if v in self.candidates]
        for v in known + [v for v, _ in unjudged if v not in self.candidates]:
            if v not in self.candidates:
                if len(self.candidates) >= MAX_CANDIDATES:
                    older = [k for k, e in self.candidates.items() if e[1] < start]
                    if not older:
                        continue  # every candidate was seen in this bucket: this version is not counted
                    del self.candidates[min(older, key=lambda k: (self.candidates[k][0], self.candidates[k][1], k))]
                self.candidates[v] = [0, start, 0]
            c = self.candidates[v]
            c[0] += 1
            c[1] = start
            if c[0] < ADMIT_BUCKETS or self.stable is None:
                continue
            if len(self.runs) >= MAX_CANARIES and not self._free_slot():
                if not c[2]:
                    c[2] = 1
                    self.refused += 1
                    if not self.full_alerted:
                        self.full_alerted = True
                        out.append(self._refusal(start, v))
                continue
            del self.candidates[v]
            self.runs[v] = self._new_run(self.stable, v, start)
        return out

    def _free_slot(self) -> bool:
        """Frees the slot of the finished canary that had traffic longest ago; False when none is finished."""
        done = [(r.seen or 0.0, v) for v, r in self.runs.items() if r.policy.phase != "progressing"]
        if not done:
            return False
        del self.runs[min(done)[1]]
        return True

    def _refusal(self, start: int, version: str) -> Decision:
        assert self.stable is not None
        return Decision(
            time=iso(start + self.window.bucket_seconds), agent=self.agent, action="alert", version=version,
            weights={self.stable: 100.0, version: 0.0}, evidence=[], examples=[],
            reason=f"canary {version} is not judged: {len(self.runs)} canary versions of {self.agent} already are "
                   f"(at most {MAX_CANARIES} at once); its events are ignored until a slot frees")

    def to_state(self) -> dict[str, Any]:
        return {
            "agent": self.agent, "window": self.window.to_state(),
            "canaries": [{"analysis": r.analysis.to_state(), "policy": r.policy.to_state(), "seen": r.seen}
                         for r in self.runs.values()],
            "track": {"stable": self.stable, "candidates": [[v, *c] for v, c in self.candidates.items()],
                      "unjudged_events": self.unjudged_events, "refused": self.refused,
                      "full_alerted": self.full_alerted},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.window.load_state(state["window"])
        self.runs = {}
        for c in state["canaries"]:
            a = c["analysis"]
            run = self._new_run(a["stable"], a["canary"], None if c["seen"] is None else float(c["seen"]))
            run.analysis.load_state(a)
            run.policy.load_state(c["policy"])
            self.runs[run.canary] = run
        track = state["track"]
        self.stable = track["stable"]
        self.candidates = {str(v): [int(n), float(seen), int(refused)] for v, n, seen, refused in track["candidates"]}
        self.unjudged_events = int(track["unjudged_events"])
        self.refused = int(track["refused"])
        self.full_alerted = bool(track["full_alerted"])


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
                for run in st.runs.values():
                    run.policy.rollout = r

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
