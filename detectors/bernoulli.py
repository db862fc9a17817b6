"""Anytime-valid two-sample test of a 0/1 outcome (escalation, error) fed one observation at a time.

Consecutive observations are grouped into label-only *blocks* (:mod:`detectors.blocks`): a block holds
about ``block`` observations of the rarer arm and every observation of the other arm that came in between.
Each closed block is a 2x2 table; if within a block canary and baseline outcomes are exchangeable (the null
hypothesis), its canary count given the margins is hypergeometric whatever the rate is at that time, and the
tables feed the mixture SPRT of :mod:`detectors.mixture_fisher` (Fisher's noncentral hypergeometric
likelihood).

Guarantee: the log mixture likelihood ratio is the log of a nonnegative martingale with mean one under the
null, so by Ville's inequality it ever reaches ``log(1/alpha)`` with probability at most ``alpha``, over an
unbounded watch checked after every observation. Rates that move over time, and a canary share that moves
over time, hit both arms of a block alike and do not break it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.blocks import (
    BlockedTwoSampleTest,
    Blocks,
    Direction,
    Floats,
    Ints,
    State,
    block_sums,
    check_direction,
    fisher_increments,
)
from detectors.mixture_fisher import default_log_psi

__all__ = ["BernoulliTest"]


class BernoulliTest(BlockedTwoSampleTest):
    """Anytime-valid test of a 0/1 outcome, canary against baseline, one observation at a time.

    Observations are grouped into label-only blocks (see :mod:`detectors.blocks`) whose 2x2 tables feed a
    mixture SPRT on Fisher's noncentral hypergeometric likelihood, over odds ratios from 1.1x to 10x in the
    harmful direction. Under the null (within a block, canary and baseline outcomes exchangeable), the
    probability of ever alarming is at most ``alpha``, however long it watches and however the base rate
    and the canary share move over time. The alarm is sticky until :meth:`reset`.

    Parameters
    ----------
    alpha:
        False-alarm probability over an unbounded watch, in (0, 1).
    direction:
        ``"increase"`` when a higher canary rate is harmful, ``"decrease"`` when a lower one is.
    block:
        Observations of the rarer arm per block (>= 1): larger blocks lose less to the stratification,
        smaller ones alarm sooner after the evidence arrives.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> canary = rng.random(20_000) < 0.10                        # 10% canary share
    >>> escalated = rng.random(20_000) < np.where(canary, 0.24, 0.12)
    >>> test = BernoulliTest(alpha=0.01)
    >>> test.update_many(escalated, canary), test.p_value < 0.01
    (True, True)
    >>> same = BernoulliTest(alpha=0.01)
    >>> same.update_many(rng.random(20_000) < 0.12, canary)
    False
    """

    name = "bernoulli"
    kind = "binary"

    def __init__(self, alpha: float = 0.01, direction: Direction = "increase", block: int = 5) -> None:
        super().__init__(alpha, block)
        self._direction = check_direction(direction)
        self._grid = default_log_psi(self._direction)
        self.reset()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"alpha": 0.05, "block": 2}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"alpha": 0.0}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"direction": "up"}, "direction"),
                ({"block": 0}, "block"), ({"block": 2.5}, "block")]

    @property
    def direction(self) -> Direction:
        return self._direction

    def params(self) -> dict[str, Any]:
        return {"alpha": self._alpha, "direction": self._direction, "block": self._block}

    def _fresh(self, n_rows: int) -> State:
        return {"pending": np.zeros((n_rows, 2, 2)), "log_lr": np.zeros((n_rows, self._grid.size))}

    def _check_values(self, x: Floats) -> None:
        if not np.all((x == 0.0) | (x == 1.0)):
            raise ValueError("xs must be 0/1 outcomes")

    def _increments(self, st: State, x: Floats, lab: NDArray[np.bool_],
                    blocks: Blocks) -> tuple[Floats, Floats, Ints, Floats]:
        feats = np.stack([np.ones_like(x), x], axis=2)
        sums, st["pending"] = block_sums(blocks, lab, feats, st["pending"])
        where, inc = fisher_increments(sums, blocks.closed, self._grid)
        n_rows, g = x.shape[0], self._grid.size
        return st["log_lr"].reshape(n_rows, 1, g), np.zeros((n_rows, 1)), where, inc

    def _vars(self) -> dict[str, Any]:
        return self._common_vars()

    def _load(self, state: dict[str, Any]) -> None:
        self._load_common(state)
