"""Anytime-valid two-sample test of a Poisson rate (tool calls, retries per conversation), one count at a time.

Observations are grouped into label-only blocks (:mod:`detectors.blocks`). In a closed block with
``n_c`` canary and ``n_s`` baseline observations whose counts total ``K``, if the counts are independent
Poisson with one rate for both arms (the null), the canary's total given ``K`` is Binomial(``K``,
``n_c / (n_c + n_s)``), whatever that rate is; under a rate ratio ``theta`` (canary over baseline) it is
Binomial(``K``, ``theta n_c / (theta n_c + n_s)``). The likelihood ratio of a block is then
``theta ** K_c * ((n_c + n_s) / (theta n_c + n_s)) ** K``, and its product over blocks, averaged over a grid
of ``theta`` in the harmful direction, is a nonnegative martingale with mean one under the null (the
conditional test of Lindon & Malek, NeurIPS 2022, for Poisson counts, stratified by block).

Guarantee: by Ville's inequality the statistic ever reaches ``log(1/alpha)`` with probability at most
``alpha`` under the null, however long it watches and however the rate and the canary share move over time.
The binomial conditional law is the Poisson's: counts more dispersed than Poisson (a mixture of light and
heavy users in one block) make it anti-conservative; see :class:`PoissonRateTest`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.blocks import Floats, Ints
from detectors.rate import RateTwoSampleTest

__all__ = ["PoissonRateTest", "poisson_log_lr"]


def poisson_log_lr(n_c: Floats, k_c: Floats, n_s: Floats, k_s: Floats, log_theta: Floats) -> Floats:
    """Log likelihood ratios ``(T, G)`` of ``T`` blocks on a grid of ``G`` log rate ratios.

    ``n`` are observation counts and ``k`` count totals; a block with an empty arm gives zeros.

    >>> r = poisson_log_lr(np.array([10.0]), np.array([30.0]), np.array([10.0]), np.array([10.0]),
    ...                    np.log([1.0, 3.0]))
    >>> abs(float(r[0, 0])) < 1e-12, round(float(r[0, 1]), 3)
    (True, 5.232)
    """
    live = (n_c > 0) & (n_s > 0)
    out = np.zeros((n_c.size, log_theta.size))
    nc, ns, kc, k = n_c[live, None], n_s[live, None], k_c[live, None], (k_c + k_s)[live, None]
    theta = np.exp(log_theta)[None, :]
    out[live] = kc * log_theta[None, :] + k * (np.log(nc + ns) - np.log(theta * nc + ns))
    return out


class PoissonRateTest(RateTwoSampleTest):
    """Anytime-valid test of a count rate (Poisson), canary against baseline, one observation at a time.

    Under the null (within a block, counts independent Poisson with one rate for both arms) the probability
    that it ever alarms is at most ``alpha``, over an unbounded watch, whatever the rate and the canary share
    do over time. The mixture averages rate ratios from 1.1x to 10x in the harmful direction. The alarm is
    sticky until :meth:`reset`.

    The guarantee leans on the Poisson law: conditional on a block's total, the canary's share of it is
    binomial only for Poisson counts. Overdispersed counts (variance above the mean, as tool calls per
    conversation often are) break it, and the false-alarm rate then grows with the length of the watch;
    for those, test an indicator (``count > 0``) with :class:`~detectors.bernoulli.BernoulliTest` or the
    counts with :class:`~detectors.exceedance.OrdinalExceedanceTest`.

    Parameters
    ----------
    alpha:
        False-alarm probability over an unbounded watch, in (0, 1).
    direction:
        ``"increase"`` when a higher canary rate is harmful, ``"decrease"`` when a lower one is.
    block:
        Observations of the rarer arm per block (>= 1).

    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> canary = rng.random(20_000) < 0.10
    >>> calls = rng.poisson(np.where(canary, 2.4, 2.0))          # 20% more tool calls on the canary
    >>> test = PoissonRateTest(alpha=0.01)
    >>> test.update_many(calls, canary), test.p_value < 0.01
    (True, True)
    >>> PoissonRateTest(alpha=0.01).update_many(rng.poisson(2.0, 20_000), canary)
    False
    """

    name = "poisson_rate"
    kind = "count"

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"alpha": -0.1}, "alpha"), ({"alpha": 1.0}, "alpha"), ({"direction": "down"}, "direction"),
                ({"block": 0}, "block")]

    def _check_values(self, x: Floats) -> None:
        if not np.all(np.isfinite(x) & (x >= 0.0) & (x == np.floor(x))):
            raise ValueError("xs must be non-negative integer counts")

    def _block_increments(self, sums: Floats, closed: NDArray[np.bool_]) -> tuple[Ints, Floats]:
        t = sums[closed]
        return np.flatnonzero(closed), poisson_log_lr(t[:, 1, 0], t[:, 1, 1], t[:, 0, 0], t[:, 0, 1], self._grid)
