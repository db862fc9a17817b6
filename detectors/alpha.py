"""Splitting one false-alarm budget across many tests, so a rollout's overall level stays at ``alpha``."""

from __future__ import annotations

__all__ = ["AlphaBudget"]


class AlphaBudget:
    """Union-bound (Bonferroni) allocation of ``alpha`` over known tests, plus a reserve for new ones.

    ``known`` tests share ``alpha * (1 - reserve)`` equally. Tests discovered later (an evaluation name
    first seen mid-rollout) draw from the reserve geometrically: the i-th gets ``alpha * reserve / 2**i``,
    so however many appear, the total never exceeds ``alpha``. The family-wise false-alarm probability
    is then at most ``alpha`` whatever the dependence between the tests.

    >>> budget = AlphaBudget(0.01, known=["a", "b"], reserve=0.2)
    >>> budget.level("a"), budget.level("new"), budget.level("new")
    (0.004, 0.001, 0.001)
    """

    def __init__(self, alpha: float, known: list[str] | tuple[str, ...] = (), reserve: float = 0.2) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if not 0.0 <= reserve < 1.0:
            raise ValueError(f"reserve must be in [0, 1), got {reserve!r}")
        if not known and reserve == 0.0:
            raise ValueError("reserve must be > 0 when no tests are known in advance")
        self.alpha = float(alpha)
        self.reserve = float(reserve) if known else 1.0
        self._known = {name: self.alpha * (1.0 - self.reserve) / len(known) for name in known}
        self._discovered: dict[str, float] = {}

    def level(self, name: str) -> float:
        """The level allotted to test ``name`` (allotting it from the reserve on first sight)."""
        if name in self._known:
            return self._known[name]
        if name not in self._discovered:
            self._discovered[name] = self.alpha * self.reserve / 2.0 ** (len(self._discovered) + 1)
        return self._discovered[name]

    def to_state(self) -> dict[str, object]:
        return {"alpha": self.alpha, "reserve": self.reserve, "known": list(self._known),
                "discovered": list(self._discovered)}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> AlphaBudget:
        known = list(state["known"])  # type: ignore[call-overload]
        budget = cls(float(state["alpha"]), known=known,  # type: ignore[arg-type]
                     reserve=float(state["reserve"]) if known else 0.2)  # type: ignore[arg-type]
        for name in state["discovered"]:  # type: ignore[attr-defined]
            budget.level(name)
        return budget
