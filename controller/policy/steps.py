"""The rollout policy: steps traffic forward while the canary is healthy, rolls it back on harm.

Rollback needs a critical test in alarm with at least ``min_samples`` canary observations; a test in
alarm with fewer samples, or a non-critical one, raises an alert (once per test). A category-share test
(``intent_share[billing]``) is critical when ``spec.analysis.categorical.action`` is ``rollback``. Steps advance in
event time; after the last step the canary is promoted. With no steps the policy only watches.
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
                self.step += 1
                self.step_started = t
            else:
                break
        if steps and self.step >= len(steps):
            self.phase = "promoted"
            self.weight = 100.0
            out.append(self._decide(t, "promote", f"all {len(steps)} steps passed with no harmful difference",
                                    analysis))
        return out

    def to_state(self) -> dict[str, Any]:
        return {"phase": self.phase, "step": self.step, "step_started": self.step_started,
                "weight": self.weight, "alerted": sorted(self.alerted)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.phase = state["phase"]
        self.step = int(state["step"])
        self.step_started = state["step_started"]
        self.weight = float(state["weight"])
        self.alerted = set(state["alerted"])
