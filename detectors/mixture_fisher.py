"""Anytime-valid two-sample test of a rate: canary against baseline, stratified, on 2x2 tables.

Each observation is a 2x2 table from one stratum (one time bucket of one channel, say): ``n_c`` canary
trials with ``k_c`` harmful outcomes and ``n_s`` baseline trials with ``k_s``. Conditional on the table's
margins, and if within the stratum canary and baseline outcomes are exchangeable (the null hypothesis),
``k_c`` follows the central hypergeometric law; under an odds ratio ``psi`` it follows Fisher's
noncentral hypergeometric law. The likelihood ratio of the two, multiplied over tables, is a
nonnegative martingale with mean one under the null, and so is its average over a grid of ``psi``
(a mixture SPRT, as in Johari et al. 2017, with the conditional likelihood of Fisher's exact test).

Guarantee: by Ville's inequality the probability that the statistic ever reaches ``log(1/alpha)``,
over an unbounded watch with any number of looks, is at most ``alpha`` under the null. Because the
comparison is within strata, a change that hits both versions alike (an upstream incident, a traffic
mix shift, a different canary weight per bucket) does not move it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln, logsumexp

from detectors.base import TableTest, check_probability

__all__ = ["MixtureFisherTest", "fisher_log_lr", "default_log_psi"]

Direction = Literal["increase", "decrease"]


def default_log_psi(direction: Direction = "increase", points: int = 12) -> NDArray[np.float64]:
    """A log-odds-ratio grid from a 1.1x to a 10x effect, in the harmful direction."""
    grid = np.linspace(math.log(1.1), math.log(10.0), points)
    return grid if direction == "increase" else -grid


def _lse(x: NDArray[np.float64]) -> float:
    """log(sum(exp(x))) of a small 1-D array; scipy's version costs ~100x more per call at this size."""
    m = float(np.max(x))
    if not math.isfinite(m):
        return m
    return m + math.log(float(np.sum(np.exp(x - m))))


def _log_choose(n: NDArray[np.float64], k: NDArray[np.float64]) -> NDArray[np.float64]:
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


def fisher_log_lr(n_c: ArrayLike, k_c: ArrayLike, n_s: ArrayLike, k_s: ArrayLike,
                  log_psi: ArrayLike) -> NDArray[np.float64]:
    """Log likelihood ratios, noncentral against central hypergeometric, of ``T`` tables on a grid of ``G``.

    Returns an array of shape ``(T, G)``. A table with an empty margin carries no information and
    gives zeros.

    >>> r = fisher_log_lr([10], [8], [10], [2], [0.0, 1.0])
    >>> abs(float(r[0, 0])) < 1e-9, round(float(r[0, 1]), 3)
    (True, 2.349)
    """
    nc = np.asarray(n_c, dtype=np.float64).ravel()
    kc = np.asarray(k_c, dtype=np.float64).ravel()
    ns = np.asarray(n_s, dtype=np.float64).ravel()
    ks = np.asarray(k_s, dtype=np.float64).ravel()
    g = np.asarray(log_psi, dtype=np.float64).ravel()
    if not (nc.shape == kc.shape == ns.shape == ks.shape):
        raise ValueError("n_c, k_c, n_s and k_s must have the same length")
    if np.any(kc < 0) or np.any(ks < 0) or np.any(kc > nc) or np.any(ks > ns):
        raise ValueError("counts must satisfy 0 <= k <= n")
    out = np.zeros((nc.size, g.size))
    k = kc + ks
    lo = np.maximum(0.0, k - ns)
    hi = np.minimum(k, nc)
    live = hi > lo  # a degenerate support means the table is fixed by its margins: no evidence
    if not np.any(live):
        return out
    nc, kc, ns, k, lo, hi = nc[live], kc[live], ns[live], k[live], lo[live], hi[live]
    width = int(np.max(hi - lo)) + 1
    y = lo[:, None] + np.arange(width)[None, :]
    valid = y <= hi[:, None]
    ys = np.where(valid, y, lo[:, None])
    log_p0 = _log_choose(nc[:, None], ys) + _log_choose(ns[:, None], k[:, None] - ys)
    log_p0 = np.where(valid, log_p0 - _log_choose(nc + ns, k)[:, None], -np.inf)
    # log E0[psi^X] for every grid point: logsumexp over the support, shape (T, G)
    log_mgf = logsumexp(log_p0[:, :, None] + ys[:, :, None] * g[None, None, :], axis=1)
    out[live] = kc[:, None] * g[None, :] - log_mgf
    return out


class MixtureFisherTest(TableTest):
    """Mixture SPRT for a harmful change in a rate, canary against baseline, on stratified 2x2 tables.

    Guarantee: under the null (within each table, canary and baseline outcomes exchangeable) the
    probability that the test ever alarms, over an unbounded watch, is at most ``alpha``.

    Parameters
    ----------
    alpha:
        False-alarm probability over an unbounded watch, in (0, 1).
    direction:
        ``"increase"`` when a higher canary rate is harmful (escalations, errors), ``"decrease"`` when a
        lower one is (resolutions).
    log_psi:
        The grid of log odds ratios the mixture averages over (uniform weights); by default twelve
        points from 1.1x to 10x in the harmful direction.

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> test = MixtureFisherTest(alpha=0.01)
    >>> for _ in range(60):  # one-second buckets: 5 canary and 45 baseline interactions each
    ...     _ = test.update(5, int(rng.binomial(5, 0.40)), 45, int(rng.binomial(45, 0.12)))
    >>> test.alarm, test.p_value < 0.01
    (True, True)
    """

    name: ClassVar[str] = "mixture_fisher"

    def __init__(self, alpha: float = 0.01, direction: Direction = "increase",
                 log_psi: ArrayLike | None = None) -> None:
        alpha = check_probability("alpha", alpha)
        if direction not in ("increase", "decrease"):
            raise ValueError(f"direction must be 'increase' or 'decrease', got {direction!r}")
        grid = default_log_psi(direction) if log_psi is None else np.asarray(log_psi, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
            raise ValueError("log_psi must be a non-empty 1-D array of finite numbers")
        self._alpha = float(alpha)
        self._direction: Direction = direction
        self._grid = grid
        self.reset()

    def reset(self) -> None:
        self._log_lr = np.zeros(self._grid.size)
        self._max_stat = 0.0
        self._counts = np.zeros(4)  # n_c, k_c, n_s, k_s summed over every table seen

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"alpha": 0.05}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"alpha": 0.0}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"direction": "up"}, "direction"),
                ({"log_psi": []}, "log_psi"), ({"log_psi": [0.1, float("inf")]}, "log_psi")]

    # -- updates -------------------------------------------------------------------------------------
    def update_many(self, n_c: ArrayLike, k_c: ArrayLike, n_s: ArrayLike, k_s: ArrayLike) -> bool:
        """Add several tables at once (vectorized; the same result as one ``update`` each)."""
        inc = fisher_log_lr(n_c, k_c, n_s, k_s, self._grid)
        if inc.shape[0] == 0:
            return self.alarm
        # the running maximum must see every intermediate point, as repeated updates would
        path = self._log_lr[None, :] + np.cumsum(inc, axis=0)
        stats = logsumexp(path, axis=1) - math.log(self._grid.size)
        self._log_lr = path[-1]
        self._max_stat = max(self._max_stat, float(np.max(stats)))
        self._counts += np.array([np.sum(n_c), np.sum(k_c), np.sum(n_s), np.sum(k_s)], dtype=np.float64)
        return self.alarm

    def add(self, log_lr: ArrayLike, n_c: float, k_c: float, n_s: float, k_s: float) -> None:
        """Add precomputed increments (one row of :func:`fisher_log_lr`, summed over strata)."""
        self._log_lr = self._log_lr + np.asarray(log_lr, dtype=np.float64)
        self._max_stat = max(self._max_stat, self.statistic)
        c = self._counts
        c[0] += n_c
        c[1] += k_c
        c[2] += n_s
        c[3] += k_s

    @staticmethod
    def add_each(tests: Sequence[MixtureFisherTest], log_lr: ArrayLike, counts: ArrayLike) -> None:
        """``tests[i].add(log_lr[i], *counts[i])`` for every i, vectorised.

        The tests must share one grid (only its size is checked). A rollout with segment tests updates
        hundreds of tests per bucket, and one call per test costs more than the statistics themselves.
        """
        if not tests:
            return
        inc = np.asarray(log_lr, dtype=np.float64)
        cnt = np.asarray(counts, dtype=np.float64)
        size = tests[0]._grid.size
        if inc.shape != (len(tests), size) or cnt.shape != (len(tests), 4):
            raise ValueError("log_lr must be (tests, grid) and counts (tests, 4)")
        if any(t._grid.size != size for t in tests):
            raise ValueError("the tests must share one grid")
        cur = np.stack([t._log_lr for t in tests]) + inc
        top = cur.max(axis=1)
        sums = np.exp(cur - top[:, None]).sum(axis=1)
        log_g = math.log(tests[0]._grid.size)
        for t, row, m, s, c in zip(tests, cur, top.tolist(), sums.tolist(), cnt, strict=True):
            t._log_lr = row.copy()  # a view would keep the whole batch alive
            # as in _lse, so that the statistic is the one a single add would reach
            stat = (m + math.log(s) if math.isfinite(m) else m) - log_g
            if stat > t._max_stat:
                t._max_stat = stat
            t._counts = t._counts + c

    # -- read-only state -----------------------------------------------------------------------------
    @property
    def statistic(self) -> float:
        """Log of the mixture likelihood ratio now."""
        return _lse(self._log_lr) - math.log(self._grid.size)

    @property
    def alarm(self) -> bool:
        """Whether the statistic has ever reached the threshold (an alarm is kept until ``reset``)."""
        return self._max_stat >= self.threshold

    @property
    def p_value(self) -> float:
        """Anytime-valid p-value: ``min(1, 1 / max likelihood ratio so far)``."""
        return float(min(1.0, math.exp(-self._max_stat)))

    @property
    def alpha(self) -> float:
        return self._alpha

    @property
    def direction(self) -> Direction:
        return self._direction

    @property
    def log_psi(self) -> NDArray[np.float64]:
        return self._grid.copy()

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """``(n_canary, k_canary, n_baseline, k_baseline)`` over every table seen."""
        n_c, k_c, n_s, k_s = (int(round(v)) for v in self._counts)
        return n_c, k_c, n_s, k_s

    # -- checkpoints ---------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {"alpha": self._alpha, "direction": self._direction, "log_psi": self._grid.tolist()}

    def _vars(self) -> dict[str, Any]:
        return {"log_lr": self._log_lr.tolist(), "max_stat": self._max_stat, "counts": self._counts.tolist()}

    def _load(self, state: dict[str, Any]) -> None:
        log_lr = np.asarray(state["log_lr"], dtype=np.float64)
        if log_lr.shape != self._grid.shape:
            raise ValueError(f"log_lr has {log_lr.size} values for a grid of {self._grid.size}")
        self._log_lr = log_lr
        self._max_stat = float(state["max_stat"])
        self._counts = np.asarray(state["counts"], dtype=np.float64)
