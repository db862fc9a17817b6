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

from detectors.blocks import Floats, Ints, fisher_increments
from detectors.rate import RateTwoSampleTest

__all__ = ["BernoulliTest"]


class BernoulliTest(RateTwoSampleTest):
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

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"alpha": 0.0}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"direction": "up"}, "direction"),
                ({"block": 0}, "block"), ({"block": 2.5}, "block")]

    def _check_values(self, x: Floats) -> None:
        if not np.all((x == 0.0) | (x == 1.0)):
            raise ValueError("xs must be 0/1 outcomes")

    def _block_increments(self, sums: Floats, closed: NDArray[np.bool_]) -> tuple[Ints, Floats]:
        return fisher_increments(sums, closed, self._grid)
