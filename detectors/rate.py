"""The common base of the two blocked tests of one rate: :class:`~detectors.bernoulli.BernoulliTest` (0/1
events) and :class:`~detectors.poisson.PoissonRateTest` (counts).

Both sum, per label-only block (:mod:`detectors.blocks`) and arm, the observations' count and their values,
and mix one log likelihood ratio per block over a grid of effect sizes in the harmful direction
(:func:`~detectors.mixture_fisher.default_log_psi`); they differ only in the values they take and in the
likelihood ratio of a closed block.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.blocks import BlockedTwoSampleTest, Blocks, Direction, Floats, Ints, State, block_sums, check_direction
from detectors.mixture_fisher import default_log_psi

__all__ = ["RateTwoSampleTest"]


class RateTwoSampleTest(BlockedTwoSampleTest):
    """A blocked test of one rate in one direction: :class:`~detectors.bernoulli.BernoulliTest` (events) and
    :class:`~detectors.poisson.PoissonRateTest` (counts).

    Per block and arm it sums the observations' count and their values; the mixture is over a grid of log
    ratios (odds ratios, rate ratios) from 1.1x to 10x in the harmful ``direction``. Subclasses supply
    :meth:`_check_values` and :meth:`_block_increments`, the log likelihood ratios of the closed blocks.
    """

    def __init__(self, alpha: float = 0.01, direction: Direction = "increase", block: int = 5) -> None:
        super().__init__(alpha, block)
        self._direction = check_direction(direction)
        self._grid = default_log_psi(self._direction)
        self.reset()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"alpha": 0.05, "block": 2}

    @property
    def direction(self) -> Direction:
        return self._direction

    def params(self) -> dict[str, Any]:
        return {"alpha": self._alpha, "direction": self._direction, "block": self._block}

    def _fresh(self, n_rows: int) -> State:
        return {"pending": np.zeros((n_rows, 2, 2)), "log_lr": np.zeros((n_rows, self._grid.size))}

    def _increments(self, st: State, x: Floats, lab: NDArray[np.bool_],
                    blocks: Blocks) -> tuple[Floats, Floats, Ints, Floats]:
        feats = np.stack([np.ones_like(x), x], axis=2)
        sums, st["pending"] = block_sums(blocks, lab, feats, st["pending"])
        where, inc = self._block_increments(sums, blocks.closed)
        n_rows, g = x.shape[0], self._grid.size
        return st["log_lr"].reshape(n_rows, 1, g), np.zeros((n_rows, 1)), where, inc

    @abstractmethod
    def _block_increments(self, sums: Floats, closed: NDArray[np.bool_]) -> tuple[Ints, Floats]:
        """``(where, increments)`` of the ``closed`` ``(S, width)`` blocks, as :meth:`_increments` returns them
        (``K = 1``), from the ``(S, width, 2, 2)`` sums (arm 0 baseline, 1 canary; count, then sum of values)."""

    def _vars(self) -> dict[str, Any]:
        return self._common_vars()

    def _load(self, state: dict[str, Any]) -> None:
        self._load_common(state)
