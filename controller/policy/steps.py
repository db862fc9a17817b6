"""The rollout policy: steps traffic forward while the canary is healthy, rolls it back on harm.

Rollback needs a critical test in alarm with at least ``min_samples`` canary observations; a test in
alarm with fewer samples, or a non-critical one, raises an alert (once per test). A category-share test
(``intent_share[billing]``) is critical when ``spec.analysis.categorical.action`` is ``rollback``. Steps advance
in event time, and a pause passes only on evidence (``spec.analysis.promotion``): once every critical test has
had the canary data to catch a harm of the configured size, and no critical test stands in alarm with too few
samples to act; until then the step holds, reported as a ``pause`` decision that says what is missing, again
whenever that changes (insufficient data: neither a pass nor a failure). After the last step the canary is
promoted, on the same evidence. With no steps the policy only watches.
"""

from __future__ import annotations

from typing import Any

from controller.analysis.canary import CanaryAnalysis, TestResult
from controller.config import Rollout
from controller.contracts.decisions import Action, Decision, iso

__all__ = ["RolloutPolicy"]


class RolloutPolicy:
    """The state machine of one rollout: ``progressing`` until ``rolled_back`` or ``promoted``."""

    def __init__(self, agent: str, rollout: Rollout, stable: str, canary: str) -> None:
        self.agent = agent
        self.rollout = rollout
        self.stable = stable
        self.canary = canary
        self.phase = "progressing"
        self.step = 0
        self.step_started: float | None = None
        # Watch-only rollouts know no weights of their own: 0 until a step or the rollback says so.
        self.weight = 0.0
        self.alerted: set[str] = set()
        # the step held and what it waited for, when last reported
        self.held: tuple[int, tuple[str, ...]] | None = None

    @property
    def weights(self) -> dict[str, float]:
        return {self.stable: 100.0 - self.weight, self.canary: self.weight}

    def _decide(self, t: float, action: Action, reason: str, analysis: CanaryAnalysis,
                names: list[str] | None = None) -> Decision:
        return Decision(time=iso(t), agent=self.agent, action=action, version=self.canary,
                        weights=self.weights, reason=reason, evidence=analysis.evidence(names),
                        examples=analysis.example_ids(names) if names else [])

    def on_bucket(self, t: float, alarms: list[TestResult], analysis: CanaryAnalysis) -> list[Decision]:
        """Decisions at event time ``t`` (the end of the bucket just closed)."""
        if self.phase != "progressing":
            return []
        out: list[Decision] = []
        acting = sorted(a.name for a in alarms if a.critical and a.enough_samples)
        if acting:
            self.phase = "rolled_back"
            self.weight = 0.0
            worst = min(acting, key=lambda n: analysis.tests[n].p_value)
            ev = analysis.tests[worst]
            worse = "differs from" if analysis.is_categorical(worst) else "is worse than"
            reason = (f"{worst} of canary {self.canary} {worse} stable {self.stable} "
                      f"(anytime p={ev.p_value:.2g} < alpha={ev.alpha:.2g})")
            return [self._decide(t, "rollback", reason, analysis, acting)]
        for a in alarms:
            if a.name not in self.alerted:
                self.alerted.add(a.name)
                shift = analysis.is_categorical(a.name)
                why = ("categorical action alert" if shift else "not critical") if not a.critical \
                    else "too few canary samples to act"
                looks = f"differs from stable {self.stable}" if shift else "looks worse"
                out.append(self._decide(t, "alert", f"{a.name} of canary {self.canary} {looks} ({why})",
                                        analysis, [a.name]))
        steps = self.rollout.steps
        if self.rollout.paused:  # held where it is; the analysis still runs and may still roll back
            self.step_started = t
            return out
        if self.step_started is None:
            self.step_started = t
        while self.step < len(steps):
            s = steps[self.step]
            if s.set_weight is not None:
                self.weight = s.set_weight
                self.step += 1
                self.step_started = t
                out.append(self._decide(t, "set_weight", f"step {self.step}/{len(steps)}: canary weight "
                                        f"{s.set_weight:g}%", analysis))
            elif s.pause is not None and t - self.step_started >= s.pause:
                hold = self._hold(t, alarms, analysis)
                if hold is not None:
                    out.extend(hold)
                    return out
                self.step += 1
                self.step_started = t
            else:
                break
        if steps and self.step >= len(steps):
            hold = self._hold(t, alarms, analysis)
            if hold is not None:
                out.extend(hold)
                return out
            self.phase = "promoted"
            self.weight = 100.0
            p = self.rollout.analysis.promotion
            why = (f", each critical test with the data to catch a harm of odds ratio {p.odds_ratio:g} "
                   f"(or +{100 * p.increase:g} pp) with probability {p.power:g}") if p.evidence else ""
            out.append(self._decide(t, "promote", f"all {len(steps)} steps passed with no harmful difference{why}",
                                    analysis))
        return out

    def _hold(self, t: float, alarms: list[TestResult], analysis: CanaryAnalysis) -> list[Decision] | None:
        """None when the step may pass on evidence; else the step holds, with a ``pause`` decision whenever what it
        waits for changes (too little canary data, or a critical test in alarm with too few samples to act:
        neither a pass nor a failure)."""
        standing = sorted(a.name for a in alarms if a.critical and not a.enough_samples)
        gaps = analysis.promotion_gaps()
        if not standing and not gaps:
            return None
        what = (self.step, tuple(standing + [g.name for g in gaps]))
        if self.held == what:
            return []  # reported already; reported again when what it waits for changes
        self.held = what
        p = self.rollout.analysis.promotion
        parts = [f"{', '.join(standing)} in alarm with too few samples to act"] if standing else []
        if gaps:
            parts.append(f"insufficient data to catch a harm of odds ratio {p.odds_ratio:g} (or +{100 * p.increase:g}"
                         f" pp) with probability {p.power:g}: " + "; ".join(str(g) for g in gaps[:5])
                         + (f"; {len(gaps) - 5} more" if len(gaps) > 5 else ""))
        at = f"step {self.step + 1}/{len(self.rollout.steps)}" if self.step < len(self.rollout.steps) else "promotion"
        names = standing + [g.name for g in gaps if g.name in analysis.tests]
        return [self._decide(t, "pause", f"{at} held: " + "; ".join(parts), analysis, names or None)]

    def to_state(self) -> dict[str, Any]:
        return {"phase": self.phase, "step": self.step, "step_started": self.step_started,
                "weight": self.weight, "alerted": sorted(self.alerted),
                "held": None if self.held is None else [self.held[0], list(self.held[1])]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.phase = state["phase"]
        self.step = int(state["step"])
        self.step_started = state["step_started"]
        self.weight = float(state["weight"])
        self.alerted = set(state["alerted"])
        held = state.get("held")  # absent from checkpoints written before steps held on evidence
        self.held = None if held is None else (int(held[0]), tuple(held[1]))
