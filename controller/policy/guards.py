"""The rollback guards: ``spec.rollback.cooldown`` and ``spec.rollback.maxActions``.

Within ``cooldown`` of the last rollback of an agent, or after ``maxActions`` rollbacks of its resource, a
rollback is withheld: it becomes an alert that says why (protection against a deploy loop re-applying a
bad version). Time is the decisions' event time, never a wall clock, so the live actuator
(:mod:`controller.runtime.actuator`) and ``vigil replay`` (:mod:`controller.replay`), which both guard
through :class:`RollbackGuard`, withhold the same rollbacks.

A pure module: no broker, no cluster. The live actuator seeds the counts from the AgentRollout's status
(``rollbacksApplied``, ``lastRollbackTime``) with :meth:`RollbackGuard.remember`, and reports each rollback
carried out with :meth:`RollbackGuard.carried_out`.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from controller.config import RollbackPolicy
from controller.contracts.decisions import Decision, seconds

__all__ = ["RollbackGuard", "withheld_because"]


def withheld_because(policy: RollbackPolicy, count: int, last: float | None, t: float) -> str | None:
    """Why a rollback at event time ``t`` is withheld, after ``count`` rollbacks the last of which was at
    ``last``; None when it may go ahead.

    >>> p = RollbackPolicy(cooldown=600.0, max_actions=2)
    >>> withheld_because(p, 1, 0.0, 60.0)
    'a rollback 60 s ago is within spec.rollback.cooldown=600 s'
    >>> withheld_because(p, 1, 0.0, 700.0) is None, withheld_because(p, 0, None, 0.0) is None
    (True, True)
    >>> withheld_because(p, 2, 0.0, 5000.0)
    '2 rollbacks already carried out (spec.rollback.maxActions=2)'
    """
    if count >= policy.max_actions:
        return f"{count} rollbacks already carried out (spec.rollback.maxActions={policy.max_actions})"
    if last is not None and t - last < policy.cooldown:
        return f"a rollback {t - last:.0f} s ago is within spec.rollback.cooldown={policy.cooldown:g} s"
    return None


class RollbackGuard:
    """The rollbacks carried out per agent, and the rollbacks that the policy withholds.

    ``policy_of`` gives an agent's rollback policy (None: the agent has no rollout, and is not guarded).
    """

    def __init__(self, policy_of: Callable[[str], RollbackPolicy | None]) -> None:
        self.policy_of = policy_of
        self.rollbacks: dict[str, tuple[int, float | None]] = {}
        """Per agent: rollbacks carried out and the event time of the last one."""
        self.withheld = 0
        """Rollbacks turned into alerts."""

    def knows(self, agent: str) -> bool:
        """Whether the counts of ``agent`` are known (remembered, or counted here)."""
        return agent in self.rollbacks

    def remember(self, agent: str, count: int, last: float | None) -> None:
        """Start ``agent`` from rollbacks carried out before (by an earlier leader, as its status records)."""
        self.rollbacks[agent] = (count, last)

    def check(self, d: Decision) -> Decision:
        """``d``, or an alert in its place when the rollback policy withholds it."""
        if d.action != "rollback":
            return d
        policy = self.policy_of(d.agent)
        if policy is None:
            return d
        t = seconds(d.time)
        count, last = self.rollbacks.get(d.agent, (0, None))
        if last is not None and last == t:
            return d  # this very rollback, carried out again after a failover: idempotent, not a new one
        why = withheld_because(policy, count, last, t)
        if why is None:
            return d
        self.withheld += 1
        return msgspec.structs.replace(d, action="alert", reason=f"rollback withheld: {why}; {d.reason}")

    def carried_out(self, d: Decision) -> None:
        """Count ``d`` when it is a rollback that was carried out (a repeat of the last one counts once)."""
        if d.action != "rollback":
            return
        count, last = self.rollbacks.get(d.agent, (0, None))
        t = seconds(d.time)
        self.rollbacks[d.agent] = (count + (last != t), t)

    def apply(self, d: Decision) -> Decision:
        """:meth:`check` then :meth:`carried_out`: the decision as it would be carried out, counted."""
        out = self.check(d)
        self.carried_out(out)
        return out
