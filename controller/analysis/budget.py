"""The alpha budget of one rollout: how its false-alarm probability is split between its tests.

The pooled tests share ``alpha * (1 - SEGMENT_SHARE)`` through :class:`detectors.AlphaBudget` (the whole of
``alpha`` without segments), in proportion to their metrics' weights; the segment tests share
``alpha * SEGMENT_SHARE`` through :class:`detectors.SegmentBudget`: per pooled test and dimension a family,
and within it a summable allocation over the at most ``max_segments + 1`` values in their order of discovery.
A union bound over every test that can ever exist keeps the probability of rolling back a healthy canary at
most ``alpha``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detectors.alpha import AlphaBudget, SegmentBudget

__all__ = ["SEGMENT_SHARE", "RolloutBudget"]

#: Share of ``alpha`` given to the segment tests when there are any; the pooled tests keep the rest.
SEGMENT_SHARE = 0.5


class RolloutBudget:
    """The levels of a rollout's pooled tests and segment tests; ``slots`` the values per dimension."""

    def __init__(self, alpha: float, known: Sequence[str] | Mapping[str, float], reserve: float,
                 slots: dict[str, int]) -> None:
        share = SEGMENT_SHARE if slots else 0.0
        self.pooled = AlphaBudget(alpha * (1.0 - share), known=known, reserve=reserve)
        self.segments: SegmentBudget | None = SegmentBudget(alpha * share, known, slots, reserve=reserve) \
            if slots else None

    def level(self, base: str, dimension: str | None = None, value: str | None = None) -> float:
        """The level of the pooled test ``base``, or of its restriction to ``dimension=value``."""
        if dimension is None:
            return self.pooled.level(base)
        assert self.segments is not None and value is not None
        return self.segments.level(base, dimension, value)

    @property
    def slots(self) -> dict[str, int]:
        """Values of each dimension that can be tested apart, the pooled ``other`` included."""
        return {} if self.segments is None else dict(self.segments.slots)

    def load(self, pooled: dict[str, Any], segments: dict[str, Any] | None) -> None:
        """The budgets of a checkpoint (the ones the rollout started with, even if the config changed since)."""
        self.pooled = AlphaBudget.from_state(pooled)
        self.segments = None if segments is None else SegmentBudget.from_state(segments)
