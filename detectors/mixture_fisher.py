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

__all__ = ["MixtureFisherTest", "default_log_psi", "fisher_log_lr", "start_log_weight"]

Direction = Literal["increase", "decrease"]


def default_log_psi(direction: Direction = "increase", points: int = 12) -> NDArray[np.float64]:
    """A log-odds-ratio grid from a 1.1x to a 10x effect, in the harmful direction."""
    grid = np.linspace(math.log(1.1), math.log(10.0), points)
    return grid if direction == "increase" else -grid


def _lse_rows(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """log(sum(exp(row))) of each row; the one log-sum-exp of the statistic, so the alarms (running maxima of
    batches) and :attr:`MixtureFisherTest.statistic` agree to the bit (scipy's costs ~100x more at this size)."""
    top = x.max(axis=1)
    safe = np.where(np.isfinite(top), top, 0.0)
    out: NDArray[np.float64] = np.where(np.isfinite(top), safe + np.log(np.exp(x - safe[:, None]).sum(axis=1)), top)
    return out


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


def start_log_weight(m: int, change_every: int) -> float:
    """Log prior weight of the mixture's ``m``-th start (start 0 at the first table, start ``m`` at table
    ``m * change_every + 1``): all of it on the first start without fresh starts, else half on it and
    ``1 / (2 m (m + 1))`` on start ``m``, so that the weights sum to one.

    >>> start_log_weight(0, 0), round(start_log_weight(0, 60), 4), round(start_log_weight(3, 60), 4)
    (0.0, -0.6931, -3.1781)
    """
    if change_every == 0:
        return 0.0 if m == 0 else -math.inf
    return -math.log(2.0) if m == 0 else -math.log(2.0 * m * (m + 1))


class MixtureFisherTest(TableTest):
    """Mixture SPRT for a harmful change in a rate, canary against baseline, on stratified 2x2 tables.

    Guarantee: under the null (within each table, canary and baseline outcomes exchangeable) the
    probability that the test ever alarms, over an unbounded watch, is at most ``alpha``; with
    ``change_every`` too, whenever the harm begins.

    The statistic is the log of the average, over the grid of odds ratios ``psi`` and over the starts,
    of the likelihood ratio of the tables since each start. Without ``change_every`` there is one start,
    the first table: evidence accumulates from the beginning and never forgets, so a harm that begins after
    a long healthy stretch must first make up for the evidence of health gathered before it. With
    ``change_every = k``, a fresh start is added every ``k`` tables (start ``m`` at table ``m k + 1``, prior
    weight ``1 / (2 m (m + 1))``; the first start keeps half the weight): a harm that begins at table ``t``
    is judged from the first start after it, at a cost of ``log(2 m (m + 1))`` nats of evidence instead of
    all the healthy history before it. The weights sum to one and each start's likelihood ratio has mean
    one under the null, so the average is a nonnegative martingale of mean one (a mixture over change
    times in the sense of Shiryaev-Roberts and of the e-detectors of Shin, Ramdas and Rinaldo): by Ville's
    inequality it ever reaches ``1/alpha`` with probability at most ``alpha``, over an unbounded watch.

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
    change_every:
        Tables (updates) between two fresh starts of the mixture; 0 (the default): none, the evidence is
        counted from the first table only.

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> test = MixtureFisherTest(alpha=0.01)
    >>> for _ in range(60):  # one-second buckets: 5 canary and 45 baseline interactions each
    ...     _ = test.update(5, int(rng.binomial(5, 0.40)), 45, int(rng.binomial(45, 0.12)))
    >>> test.alarm, test.p_value < 0.01
    (True, True)

    A healthy hour, then the same harm: the fresh starts judge it on what came after it began.

    >>> plain, fresh = MixtureFisherTest(alpha=0.01), MixtureFisherTest(alpha=0.01, change_every=60)
    >>> def table(p):
    ...     return 5, int(rng.binomial(5, p)), 45, int(rng.binomial(45, 0.12))
    >>> for t in range(3600):
    ...     _ = plain.update(*(tab := table(0.12))), fresh.update(*tab)
    >>> delays = {}
    >>> for t in range(600):
    ...     tab = table(0.40)
    ...     for name, test in (("plain", plain), ("fresh", fresh)):
    ...         if not test.alarm and test.update(*tab):
    ...             delays[name] = t
    >>> delays["fresh"] < delays["plain"]
    True
    """

    name: ClassVar[str] = "mixture_fisher"

    def __init__(self, alpha: float = 0.01, direction: Direction = "increase",
                 log_psi: ArrayLike | None = None, change_every: int = 0) -> None:
        alpha = check_probability("alpha", alpha)
        if direction not in ("increase", "decrease"):
            raise ValueError(f"direction must be 'increase' or 'decrease', got {direction!r}")
        grid = default_log_psi(direction) if log_psi is None else np.asarray(log_psi, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
            raise ValueError("log_psi must be a non-empty 1-D array of finite numbers")
        if isinstance(change_every, bool) or not isinstance(change_every, int | np.integer) or change_every < 0:
            raise ValueError(f"change_every must be an integer >= 0, got {change_every!r}")
        self._alpha = float(alpha)
        self._direction: Direction = direction
        self._grid = grid
        self._every = int(change_every)
        self.reset()

    def reset(self) -> None:
        # per psi, the log of sum over the starts so far of weight * likelihood ratio since the start
        self._log_lr = np.full(self._grid.size, start_log_weight(0, self._every))
        self._n = 0  # tables (updates) seen
        self._max_stat = 0.0
        self._counts = np.zeros(4)  # n_c, k_c, n_s, k_s summed over every table seen

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"alpha": 0.05, "change_every": 7}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"alpha": 0.0}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"direction": "up"}, "direction"),
                ({"log_psi": []}, "log_psi"), ({"log_psi": [0.1, float("inf")]}, "log_psi"),
                ({"change_every": -1}, "change_every"), ({"change_every": 2.5}, "change_every")]

    def _start_weight(self, n: int) -> float:
        """Log weight of the fresh start at table ``n + 1`` (the next one after ``n`` seen); -inf if none."""
        k = self._every
        if k == 0 or n == 0 or n % k:
            return -math.inf
        return start_log_weight(n // k, k)

    # -- updates -------------------------------------------------------------------------------------
    def update_many(self, n_c: ArrayLike, k_c: ArrayLike, n_s: ArrayLike, k_s: ArrayLike) -> bool:
        """Add several tables at once (vectorized; the same result as one ``update`` each)."""
        inc = fisher_log_lr(n_c, k_c, n_s, k_s, self._grid)
        self._advance(inc)
        self._counts += np.array([np.sum(n_c), np.sum(k_c), np.sum(n_s), np.sum(k_s)], dtype=np.float64)
        return self.alarm

    def _advance(self, inc: NDArray[np.float64]) -> None:
        """Take the ``(T, G)`` increments of ``T`` tables, in runs between fresh starts."""
        pos, total = 0, inc.shape[0]
        while pos < total:
            w = self._start_weight(self._n)
            if w > -math.inf:
                self._log_lr = np.logaddexp(self._log_lr, w)
            run = total - pos if self._every == 0 else min(total - pos, self._every - self._n % self._every)
            # the running maximum must see every intermediate point, as repeated updates would
            path = self._log_lr[None, :] + np.cumsum(inc[pos:pos + run], axis=0)
            stats = _lse_rows(path) - math.log(self._grid.size)
            self._log_lr = path[-1]
            self._max_stat = max(self._max_stat, float(np.max(stats)))
            self._n += run
            pos += run

    def add(self, log_lr: ArrayLike, n_c: float, k_c: float, n_s: float, k_s: float) -> None:
        """Add precomputed increments (one row of :func:`fisher_log_lr`, summed over strata) as one table."""
        self._advance(np.asarray(log_lr, dtype=np.float64).reshape(1, -1))
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
        cur = np.stack([t._log_lr for t in tests])
        fresh = np.array([t._start_weight(t._n) for t in tests])
        if np.any(fresh > -math.inf):
            cur = np.logaddexp(cur, fresh[:, None])
        cur += inc
        stats = (_lse_rows(cur) - math.log(size)).tolist()
        for t, row, stat, c in zip(tests, cur, stats, cnt, strict=True):
            t._log_lr = row.copy()  # a view would keep the whole batch alive
            t._n += 1
            if stat > t._max_stat:
                t._max_stat = stat
            t._counts = t._counts + c

    # -- read-only state -----------------------------------------------------------------------------
    @property
    def statistic(self) -> float:
        """Log of the mixture likelihood ratio now."""
        return float(_lse_rows(self._log_lr[None, :])[0]) - math.log(self._grid.size)

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
    def change_every(self) -> int:
        """Tables between two fresh starts of the mixture (0: none)."""
        return self._every

    @property
    def n(self) -> int:
        """Tables (updates) seen since the last reset."""
        return self._n

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
        return {"alpha": self._alpha, "direction": self._direction, "log_psi": self._grid.tolist(),
                "change_every": self._every}

    def _vars(self) -> dict[str, Any]:
        return {"log_lr": self._log_lr.tolist(), "n": self._n, "max_stat": self._max_stat,
                "counts": self._counts.tolist()}

    def _load(self, state: dict[str, Any]) -> None:
        log_lr = np.asarray(state["log_lr"], dtype=np.float64)
        if log_lr.shape != self._grid.shape:
            raise ValueError(f"log_lr has {log_lr.size} values for a grid of {self._grid.size}")
        self._log_lr = log_lr
        self._n = int(state.get("n", 0))  # absent from version-1 checkpoints, whose tests had no fresh starts
        self._max_stat = float(state["max_stat"])
        self._counts = np.asarray(state["counts"], dtype=np.float64)
