"""Splitting one false-alarm budget across many tests, so a rollout's overall level stays at ``alpha``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["AlphaBudget", "SegmentBudget"]


class AlphaBudget:
    """Union-bound (Bonferroni) allocation of ``alpha`` over known tests, plus a reserve for new ones.

    ``known`` tests share ``alpha * (1 - reserve)``: equally, or in proportion to their weights when
    ``known`` maps each test to a weight (the more important a test, the larger its share and the sooner it
    can act). Tests discovered later (an evaluation name first seen mid-rollout) draw from the reserve
    geometrically: the i-th gets ``alpha * reserve / 2**i``, so however many appear, the total never exceeds
    ``alpha``. The family-wise false-alarm probability is then at most ``alpha`` whatever the dependence
    between the tests.

    >>> budget = AlphaBudget(0.01, known=["a", "b"], reserve=0.2)
    >>> budget.level("a"), budget.level("new"), budget.level("new")
    (0.004, 0.001, 0.001)
    >>> weighted = AlphaBudget(0.01, known={"errors": 3.0, "tokens": 1.0}, reserve=0.2)
    >>> round(weighted.level("errors"), 6), round(weighted.level("tokens"), 6)
    (0.006, 0.002)
    """

    def __init__(self, alpha: float, known: Sequence[str] | Mapping[str, float] = (), reserve: float = 0.2) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if not 0.0 <= reserve < 1.0:
            raise ValueError(f"reserve must be in [0, 1), got {reserve!r}")
        if not known and reserve == 0.0:
            raise ValueError("reserve must be > 0 when no tests are known in advance")
        weights = dict(known) if isinstance(known, Mapping) else dict.fromkeys(known, 1.0)
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, int | float) or not 0.0 < w < float("inf"):
                raise ValueError(f"known weight of {name!r} must be a positive number, got {w!r}")
        self.alpha = float(alpha)
        self.reserve = float(reserve) if known else 1.0
        total = math.fsum(weights.values())
        self._weights = weights
        self._known = {name: self.alpha * (1.0 - self.reserve) * w / total for name, w in weights.items()}
        self._discovered: dict[str, float] = {}

    def level(self, name: str) -> float:
        """The level allotted to test ``name`` (allotting it from the reserve on first sight)."""
        if name in self._known:
            return self._known[name]
        if name not in self._discovered:
            self._discovered[name] = self.alpha * self.reserve / 2.0 ** (len(self._discovered) + 1)
        return self._discovered[name]

    def to_state(self) -> dict[str, object]:
        out: dict[str, object] = {"alpha": self.alpha, "reserve": self.reserve, "known": list(self._known),
                                  "discovered": list(self._discovered)}
        if any(w != 1.0 for w in self._weights.values()):  # absent when equal: the state is as it always was
            out["weights"] = list(self._weights.values())
        return out

    @classmethod
    def from_state(cls, state: dict[str, object]) -> AlphaBudget:
        names = list(state["known"])  # type: ignore[call-overload]
        weights = state.get("weights")
        known: list[str] | dict[str, float] = names if weights is None else \
            dict(zip(names, (float(w) for w in weights), strict=True))  # type: ignore[attr-defined]
        budget = cls(float(state["alpha"]), known=known,  # type: ignore[arg-type]
                     reserve=float(state["reserve"]) if known else 0.2)  # type: ignore[arg-type]
        for name in state["discovered"]:  # type: ignore[attr-defined]
            budget.level(name)
        return budget


class SegmentBudget:
    """Union-bound allocation of ``alpha`` over segment tests: one test per base test and value of a dimension.

    A *segment test* is a base test (``escalation_rate``, ``latency_ms>p90``) restricted to one value of a
    dimension (the channel ``voice``, the tenant ``acme``). The segment tests of one base test and one
    dimension form a *family*, whose values are discovered one by one while the data streams in.

    * Families split ``alpha`` as :class:`AlphaBudget` splits it over tests: the families of the ``known``
      base tests share ``alpha * (1 - reserve)`` equally (in proportion to the base tests' weights when
      ``known`` maps them to weights), and the families of base tests discovered later
      draw halving shares of the reserve, ``alpha * reserve / 2**j`` for the j-th.
    * Within a family with budget ``f``, a dimension holds at most ``slots[dimension]`` values (the caller
      pools the rest into one), and the i-th value discovered (i = 1, 2, ...) gets
      ``f * (1 / (2 * slots) + 2**-(i + 1))``: half of ``f`` split equally over the slots, so that no value
      gets less than ``f / (2 * slots)``, plus half of it geometrically, so that the first values found
      (the busiest ones, when the caller offers them busiest first) get more. Over at most ``slots``
      values these shares sum to less than ``f``.

    The levels of all segment tests that can ever be created, in every family, therefore sum to at most
    ``alpha``, whatever the order and time of their discovery and whatever the dependence between them.
    A value beyond the slots of its dimension is refused (``ValueError``) rather than over-spending.

    >>> budget = SegmentBudget(0.01, known=["esc", "err"], slots={"tenant": 2}, reserve=0.0)
    >>> budget.level("esc", "tenant", "acme"), budget.level("esc", "tenant", "globex")
    (0.0025, 0.001875)
    >>> budget.level("esc", "tenant", "acme"), budget.level("err", "tenant", "globex"), round(budget.spent, 9)
    (0.0025, 0.0025, 0.006875)
    """

    def __init__(self, alpha: float, known: Sequence[str] | Mapping[str, float], slots: Mapping[str, int],
                 reserve: float = 0.2) -> None:
        if not slots:
            raise ValueError("slots must name at least one dimension")
        for dim, k in slots.items():
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"slots of {dim!r} must be an integer >= 1, got {k!r}")
        self.slots = dict(slots)
        # families are keyed "test\x1fdimension": the unit separator cannot clash with a test name in practice
        # and keeps the family budget an AlphaBudget, with its checkpoint
        weights = dict(known) if isinstance(known, Mapping) else dict.fromkeys(known, 1.0)
        self._families = AlphaBudget(alpha, known={_family(t, d): w for t, w in weights.items() for d in self.slots},
                                     reserve=reserve)
        self._members: dict[str, dict[str, float]] = {}

    @property
    def alpha(self) -> float:
        return self._families.alpha

    def level(self, test: str, dimension: str, value: str) -> float:
        """The level of ``test`` restricted to ``dimension = value`` (allotted on first sight)."""
        if dimension not in self.slots:
            raise ValueError(f"unknown dimension {dimension!r} (known: {', '.join(sorted(self.slots))})")
        fam = _family(test, dimension)
        members = self._members.setdefault(fam, {})
        got = members.get(value)
        if got is not None:
            return got
        k = self.slots[dimension]
        i = len(members) + 1
        if i > k:
            raise ValueError(f"{dimension!r} already holds its {k} values in the family of {test!r}: pool the rest")
        members[value] = self._families.level(fam) * (0.5 / k + 2.0 ** -(i + 1))
        return members[value]

    @property
    def spent(self) -> float:
        """The sum of the levels allotted so far (at most ``alpha``)."""
        return sum(sum(m.values()) for m in self._members.values())

    def to_state(self) -> dict[str, object]:
        return {"families": self._families.to_state(), "slots": dict(self.slots),
                "members": {fam: list(m) for fam, m in self._members.items()}}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> SegmentBudget:
        budget = cls.__new__(cls)
        budget.slots = {str(d): int(k) for d, k in state["slots"].items()}  # type: ignore[attr-defined]
        budget._families = AlphaBudget.from_state(state["families"])  # type: ignore[arg-type]
        budget._members = {}
        for fam, values in state["members"].items():  # type: ignore[attr-defined]
            test, dim = fam.rsplit("\x1f", 1)
            for value in values:
                budget.level(test, dim, value)
        return budget


def _family(test: str, dimension: str) -> str:
    return f"{test}\x1f{dimension}"
