"""Bayesian online changepoint detection (Adams & MacKay 2007) with a Normal-Gamma model.

The stream is a sequence of segments; within a segment the observations are i.i.d. normal with an unknown
mean and variance (Normal-Gamma prior), and a new segment starts before each observation with the constant
probability ``1/expected_run_length`` (the hazard). The run length ``n`` is the number of observations of
the current segment, the last one included; its posterior is updated exactly, one observation at a time,
by the message passing of Adams & MacKay. It is truncated to ``max_run_length`` values: the last one
holds "``max_run_length`` or more" and keeps the sufficient statistics of the longest run (everything
since the restart), so the mass that would grow past the truncation is folded into it rather than lost.

The detector alarms when ``P(n <= window)``, the posterior probability that a change happened within the
last ``window`` observations, reaches a threshold set for the target average run length to a false alarm
(``arl``) on an in-control Gaussian stream. The priors are fixed on a standardized scale: the first
``warmup`` observations after each (re)start give a median and a MAD (scaled to a standard deviation), and
the model sees ``(x - median) / scale``. The whole detector is then invariant to ``x -> a x + b``
(``a > 0``), so one calibration holds for every in-control normal law: the threshold is interpolated from
:data:`CALIBRATION`, made offline by simulation (``benchmarks/calibrate_bocpd.py``). The table is for the
default ``expected_run_length``, ``max_run_length``, ``window`` and ``warmup``; with other values the
threshold still comes from it and the ARL is only roughly the target (pass ``threshold`` to set it).

Cost: the recursion is sequential in time, but only the posterior is: the predictive density of every run
length at an observation depends on the data alone (the sums of the run's observations). ``update_many``
takes the observations in blocks of up to 128: it computes those densities for the whole block at once (a
``(block, max_run_length)`` array), then walks the posterior through the block with two numpy calls per
observation (a product and the sums within and beyond the window). About 5 us per observation at the
default ``max_run_length=200`` on one core (some 200,000 a second; 50 us before this kernel). ``update`` runs
the same kernel on a block of one observation, so the two give the same numbers to the last bit (about
50 us per call: the fixed cost of a block). Nothing is approximated or pruned: every run length is kept and
the recursion is exact up to floating-point rounding. (The run-length weights are kept unnormalized and
rescaled by exact powers of two, so a run length whose posterior mass is below ~1e-230 of the total may lose
precision or flush to zero, where the normalized recursion flushed below ~1e-308: no statistic moves by
more than that.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, gammaln

from detectors.base import ChangeDetector, check_positive, check_probability

__all__ = ["BOCPD", "CALIBRATION", "threshold_for_arl"]

# Normal-Gamma prior of a new segment, on the standardized scale: mean 0 (pseudo-count KAPPA0), precision
# Gamma(ALPHA0, BETA0). The prior predictive is a Student t with 2 ALPHA0 = 2 degrees of freedom and scale
# sqrt(BETA0 (KAPPA0 + 1) / (ALPHA0 KAPPA0)) = 3.3 standard deviations of the warm-up.
KAPPA0 = 0.1
ALPHA0 = 1.0
BETA0 = 1.0

#: ``(arl, logit of the threshold on P(change within the last window observations))`` for the default
#: ``expected_run_length=1000, max_run_length=200, window=20, warmup=50``; the threshold of an ``arl`` is
#: interpolated linearly in ``log(arl)`` (and extrapolated from the end segments). Produced by
#: ``benchmarks/calibrate_bocpd.py`` (4,000 standard normal streams of 40,000 observations, seed 20261126,
#: 734 s on 2 cores): each stream runs the detector's recursion and records its first-passage time for a
#: grid of thresholds (logits -14 to 8, step 0.25); the ARL of a threshold is the mean first-passage time,
#: the streams that did not alarm censored (exponential-tail estimate; 154 alarms at the 1,000,000 row).
#: Re-run on the block kernel of ``update_many`` (same streams): the same first passages, the same table.
CALIBRATION: tuple[tuple[float, float], ...] = (
    (100.0, -4.184),
    (200.0, -3.285),
    (500.0, -2.34),
    (1_000.0, -1.637),
    (2_000.0, -0.993),
    (5_000.0, -0.159),
    (10_000.0, 0.456),
    (20_000.0, 1.076),
    (50_000.0, 1.873),
    (100_000.0, 2.535),
    (200_000.0, 3.146),
    (500_000.0, 3.903),
    (1_000_000.0, 4.487),
)


def threshold_for_arl(arl: float) -> float:
    """The calibrated threshold (a probability) for a target ``arl``, from :data:`CALIBRATION`."""
    xs = [math.log(a) for a, _ in CALIBRATION]
    ys = [y for _, y in CALIBRATION]
    la = math.log(arl)
    k = 1 if la <= xs[1] else len(xs) - 1 if la >= xs[-2] else next(i for i in range(1, len(xs)) if la <= xs[i])
    y = ys[k - 1] + (ys[k] - ys[k - 1]) * (la - xs[k - 1]) / (xs[k] - xs[k - 1])
    return 1.0 / (1.0 + math.exp(-y))


#: Observations per block of the kernel: the first block after a (re)start, doubled up to the last (a block is
#: computed ahead at once, so the part past an alarm is wasted; short blocks first keep that small).
_BLOCK_MIN = 16
_BLOCK_MAX = 128
#: The run-length weights are kept unnormalized; when their total falls below this, they are multiplied by a
#: power of two (exactly) to bring it back to [1/2, 1).
_TINY = 2.0 ** -256
#: Every this many observations, the running sums are taken back to 0 (see :class:`_Stream`).
_REBASE = 1024


def _t_const(alpha: NDArray[np.float64]) -> NDArray[np.float64]:
    """log normalising constant of a Student t with ``2 alpha`` degrees of freedom and unit scale.

    ``lgamma(alpha + 1/2) - lgamma(alpha)`` as ``lgamma(1/2) - lbeta(alpha, 1/2)``, which keeps its accuracy
    for the large ``alpha`` of a long run (the difference of two lgammas loses ~``log10(alpha)`` digits).
    """
    return gammaln(0.5) - betaln(alpha, 0.5) - 0.5 * np.log(2.0 * math.pi * alpha)


class _Model:
    """Constants of the recursion for one ``(max_run_length, hazard, window)``.

    The slot ``k`` holds the run of ``n = k + 1`` observations (the last slot, once the truncation binds, the
    run of all ``t`` observations since the start). Its Normal-Gamma posterior has ``kappa = KAPPA0 + n`` and
    ``alpha = ALPHA0 + n / 2``, and from the sums ``s1``, ``s2`` of its observations and its squares (prior mean
    0) ``mu = s1 / kappa`` and ``beta = BETA0 + (s2 - s1 mu) / 2``. With ``b = 2 beta`` the log predictive
    density of the next ``z``, a Student t with ``2 alpha`` degrees of freedom, mean ``mu`` and squared scale
    ``beta (kappa + 1) / (alpha kappa)``, is ``const + alpha log(b) - (alpha + 1/2) log(b c + (z - mu)^2)``
    with ``c = (kappa + 1) / kappa``; ``const`` also holds the ``log(1 - hazard)`` of the run going on.
    """

    def __init__(self, max_run_length: int, hazard: float, window: int) -> None:
        self.r = max_run_length
        self.window = window
        self.log1mh = math.log1p(-hazard)
        self.inv_kappa, self.c, self.alpha, self.a5, self.const = self.consts(
            np.arange(1, max_run_length + 1, dtype=np.float64))
        # Prior predictive of a new run (a Student t with 2 ALPHA0 degrees of freedom, squared scale
        # BETA0 (KAPPA0 + 1) / (ALPHA0 KAPPA0) = prior_scale2 / (2 ALPHA0)), with the log(hazard) of the change.
        c1 = BETA0 * (KAPPA0 + 1.0) / (ALPHA0 * KAPPA0)
        self.prior_scale2 = 2.0 * ALPHA0 * c1
        self.prior_const = float(_t_const(np.array([ALPHA0]))[0]) - 0.5 * math.log(c1) + math.log(hazard)
        self.cols = np.arange(max_run_length)

    def consts(self, n: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                                      NDArray[np.float64], NDArray[np.float64],
                                                      NDArray[np.float64]]:
        """``(1 / kappa, c, alpha, alpha + 1/2, const)`` of runs of ``n`` observations."""
        kappa = KAPPA0 + n
        alpha = ALPHA0 + n / 2.0
        a5 = alpha + 0.5
        c = (kappa + 1.0) / kappa
        const = _t_const(alpha) - 0.5 * np.log(c / alpha) + 0.5 * math.log(2.0) + a5 * np.log(c) + self.log1mh
        return 1.0 / kappa, c, alpha, a5, const


class _Stream:
    """The recursion of one stream: its state and the kernel that advances it (:meth:`run`).

    State after ``t`` observations: the unnormalized weights of the slots ``0 .. r - 2`` (``p``), of the last
    slot (``folded``) and their ``total``; the running sums of the standardized observations and of their
    squares after each of the last ``r + 1`` observations (``sums``, 0 before the start), and ``base``, what
    was taken off them: every :data:`_REBASE` observations the running sums are taken back to 0, so that the
    sums of the short runs, differences of running sums, keep their accuracy however long the stream.

    Every number is computed by the same operations in the same order whatever blocks the observations come
    in (one at a time from ``update``, or many from ``update_many``), so the two agree exactly:

    * a block of ``K`` observations first gets, at once, the predictive density of every run length at each
      of its observations (a ``(K, r)`` array): the sums of the run of ``j + 1`` observations before
      observation ``i`` are differences of running sums, and those of the folded run the running sums plus
      ``base``, none of which depends on the run-length posterior;
    * then the posterior goes through the block one observation at a time: one multiplication of the weights
      by the (scaled) predictive densities, one call for the sums within the window and beyond it, the new run.
    """

    def __init__(self, model: _Model) -> None:
        self.model = model
        r = model.r
        self.t = 0
        self.p = np.zeros(r - 1)
        self.folded = 0.0
        self.total = 1.0
        self.sums = np.zeros((2, r + 1))
        self.base = [0.0, 0.0]
        self.stat = 0.0
        self.block = _BLOCK_MIN
        self._cache_lo = 0
        self._cache: tuple[NDArray[np.float64], ...] = (np.empty(0),)
        w = model.window
        self._idx = np.array([0, w - 1] if w > 1 else [0], dtype=np.intp)

    def start(self, z: float) -> None:
        """The state after the first (standardized) observation ``z``."""
        self.t = 1
        self.p[:] = 0.0
        self.p[0] = 1.0
        self.folded = 0.0
        self.total = 1.0
        self.sums[:] = 0.0
        self.sums[:, -1] = z, z * z
        self.base = [0.0, 0.0]
        self.stat = 1.0
        self.block = _BLOCK_MIN

    def run(self, xs: NDArray[np.float64], loc: float, scale: float, threshold: float,
            stats: NDArray[np.float64] | None = None) -> int:
        """Take the observations ``xs`` (standardized here as ``(x - loc) / scale``) up to the first whose
        statistic reaches ``threshold``, and return its index (``-1`` if none); ``stats``, if given, receives the
        statistic of each observation taken."""
        i = 0
        while i < xs.size:
            if self.t % _REBASE == 0:
                top = self.sums[:, -1].tolist()
                self.sums -= self.sums[:, -1:]
                self.base = [self.base[0] + top[0], self.base[1] + top[1]]
            k = min(self.block, xs.size - i, _REBASE - self.t % _REBASE)
            hit = self._block(xs[i:i + k], loc, scale, threshold, None if stats is None else stats[i:i + k])
            if hit >= 0:
                return i + hit
            i += k
            self.block = min(2 * self.block, _BLOCK_MAX)
        return -1

    def _folded_consts(self, lo: int, hi: int) -> tuple[NDArray[np.float64], ...]:
        """:meth:`_Model.consts` of runs of ``lo .. hi - 1`` observations, from a cache (each entry is computed
        on its own, so the cached values are those of a direct computation)."""
        if not self._cache_lo <= lo <= hi <= self._cache_lo + self._cache[0].size:
            self._cache_lo = lo
            self._cache = self.model.consts(np.arange(lo, max(hi, lo + _BLOCK_MAX), dtype=np.float64))
        a, b = lo - self._cache_lo, hi - self._cache_lo
        return tuple(v[a:b] for v in self._cache)

    def _predictive(self, z: NDArray[np.float64], sums: NDArray[np.float64]) -> tuple[NDArray[np.float64],
                                                                                      NDArray[np.float64]]:
        """``(E, q)`` for the block ``z`` of ``K`` observations; ``sums``: the ``(2, r + 1 + K)`` running sums
        after the observations ``t - r .. t + K`` (C-contiguous).

        ``E[i, j]`` is the predictive density of ``z[i]`` under the run in slot ``j`` times ``1 - hazard``, and
        ``q[i]`` the prior predictive times the hazard, both divided by the largest of them (0 for dead slots).
        """
        m = self.model
        r, t, k = m.r, self.t, z.size
        mul, log = np.multiply, np.log
        now = sums[:, r:r + k]  # the running sums before z[i]
        # the running sums before the run of j + 1 observations before z[i]: sums[:, r - 1 + i - j]
        before1 = np.ndarray((k, r), np.float64, sums, 8 * (r - 1), (8, -8))
        before2 = np.ndarray((k, r), np.float64, sums, 8 * (sums.shape[1] + r - 1), (8, -8))
        s1 = np.subtract(now[0, :, None], before1)
        b = np.subtract((now[1] + 2.0 * BETA0)[:, None], before2)  # 2 beta = 2 BETA0 + s2 - s1 mu
        mu = mul(s1, m.inv_kappa)
        s1 *= mu
        b -= s1
        # b >= 2 BETA0 exactly; differences of running sums can cancel below it (or to 0) on huge values
        np.maximum(b, 2.0 * BETA0, out=b)
        d2 = np.subtract(z[:, None], mu, out=mu)
        d2 *= d2
        x = mul(b, m.c, out=s1)
        x += d2
        lp = log(b, out=b)
        lp *= m.alpha
        lx = log(x, out=x)
        lx *= m.a5
        lp -= lx
        lp += m.const
        first = max(0, r - t)  # rows from which the last slot holds the folded run of all t + i observations
        if first < k:
            inv_kappa, c, alpha, a5, const = self._folded_consts(t + first, t + k)
            f1 = now[0, first:] + self.base[0]
            fb = now[1, first:] + self.base[1]
            fmu = f1 * inv_kappa
            fb += 2.0 * BETA0
            fb -= f1 * fmu
            np.maximum(fb, 2.0 * BETA0, out=fb)
            fd = z[first:] - fmu
            fd *= fd
            fx = fb * c
            fx += fd
            lp[first:, r - 1] = alpha * log(fb) - a5 * log(fx) + const
        if first > 0:  # slots not reached yet: the slot j is live once t + i > j
            dead = min(first, k)
            np.copyto(lp[:dead], -np.inf, where=m.cols >= (t + np.arange(dead))[:, None])
        prior = m.prior_const - (ALPHA0 + 0.5) * np.log1p(z * z / m.prior_scale2)
        top = np.maximum(np.maximum.reduce(lp, axis=1), prior)
        lp -= top[:, None]
        return np.exp(lp, out=lp), np.exp(prior - top)

    def _block(self, xs: NDArray[np.float64], loc: float, scale: float, threshold: float,
               stats: NDArray[np.float64] | None) -> int:
        r, k = self.model.r, xs.size
        z = np.subtract(xs, loc)
        z /= scale
        sums = np.empty((2, r + 1 + k))
        sums[:, :r + 1] = self.sums
        sums[0, r + 1:] = z
        np.multiply(z, z, out=sums[1, r + 1:])
        np.add.accumulate(sums[:, r:], axis=1, out=sums[:, r:])
        e, q = self._predictive(z, sums)
        fold = e[:, -1].tolist()
        new = q.tolist()
        # The weights after observation i are w[k - i - 1 : k - i + r - 2]: the block walks down the buffer, so
        # the shift of the run lengths costs nothing. ws[i] is the weights before observation i.
        w = np.empty(k + r - 1)
        w[k:] = self.p
        ws = np.ndarray((k, r - 1), np.float64, w, 8 * k, (-8, 8))
        mul, sums_of, idx, two = np.multiply, np.add.reduceat, self._idx, self.model.window > 1
        folded, total, stat = self.folded, self.total, self.stat
        hit = -1
        i = 0
        for i, (g, grow) in enumerate(zip(ws, e[:, :-1], strict=True)):
            mul(g, grow, out=g)
            if two:
                within, beyond = sums_of(g, idx).tolist()
            else:
                within, beyond = 0.0, float(sums_of(g, idx)[0])
            tail = folded * fold[i]
            o = k - i
            folded = w[o + r - 2] + tail  # the run of r - 1 becomes one of "r or more"
            c = new[i] * total
            w[o - 1] = c
            within += c
            total = within + beyond + tail
            stat = within / total
            if total < _TINY:  # rescale by a power of two: exact
                f = math.ldexp(1.0, -math.frexp(total)[1])
                w[o - 1:o + r - 2] *= f
                folded *= f
                total *= f
            if stats is not None:
                stats[i] = stat
            if stat >= threshold:
                hit = i
                break
        done = i + 1
        self.p[:] = w[k - done:k - done + r - 1]
        self.folded, self.total, self.stat = folded, total, stat
        self.sums[:] = sums[:, done:done + r + 1]
        self.t += done
        return hit

    def posterior(self) -> NDArray[np.float64]:
        """The normalized run-length posterior: entry ``j`` is ``P(the run holds j + 1 observations)``."""
        p = np.append(self.p, self.folded)
        return p / p.sum()  # type: ignore[no-any-return]

    def to_vars(self) -> dict[str, Any]:
        return {"weights": self.p.tolist() + [self.folded], "total": self.total, "sums": self.sums.tolist(),
                "base": list(self.base)}

    def load(self, t: int, stat: float, state: dict[str, Any]) -> None:
        weights = [float(v) for v in state["weights"]]
        self.t = t
        self.p[:] = weights[:-1]
        self.folded = weights[-1]
        self.total = float(state["total"])
        self.sums[:] = np.asarray(state["sums"], dtype=np.float64)
        self.base = [float(v) for v in state["base"]]
        self.stat = stat
        self.block = _BLOCK_MIN


def robust_location_scale(xs: NDArray[np.float64]) -> tuple[float, float]:
    """Median and a robust scale: 1.4826 MAD, else 1.2533 x the mean absolute deviation, else a tiny floor."""
    med = float(np.median(xs))
    dev = np.abs(xs - med)
    scale = 1.482602218505602 * float(np.median(dev))
    if not scale > 0:
        scale = 1.2533141373155003 * float(np.mean(dev))
    if not scale > 0:  # a constant warm-up: any later difference is a change
        scale = max(abs(med), 1.0) * 1e-9
    return med, scale


class BOCPD(ChangeDetector):
    """Bayesian online changepoint detection (Adams & MacKay 2007), Normal-Gamma model, robustly standardized.

    Guarantee: on an in-control stream of i.i.d. normal observations (any mean and variance) the average
    run length to a false alarm is ``arl`` (by the simulation behind :data:`CALIBRATION`, for the default
    structure), counting the ``warmup`` observations after each restart during which it cannot alarm.
    ``statistic`` is the posterior probability of a change within the last ``window`` observations.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> xs = np.concatenate([rng.normal(10, 1, 300), rng.normal(14, 1, 100)])
    >>> det = BOCPD(arl=10_000)
    >>> [int(i) for i in det.update_many(xs)]
    [301]
    """

    name = "bocpd"
    kind = "real"

    def __init__(self, arl: float = 10_000.0, expected_run_length: float = 1000.0, max_run_length: int = 200,
                 window: int = 20, warmup: int = 50, threshold: float | None = None) -> None:
        self._arl = check_positive("arl", arl)
        if self._arl <= 1:
            raise ValueError(f"arl must be > 1, got {arl!r}")
        self.expected_run_length = check_positive("expected_run_length", expected_run_length)
        if self.expected_run_length <= 1:
            raise ValueError(f"expected_run_length must be > 1, got {expected_run_length!r}")
        if int(max_run_length) != max_run_length or max_run_length < 2:
            raise ValueError(f"max_run_length must be an integer >= 2, got {max_run_length!r}")
        self.max_run_length = int(max_run_length)
        if int(warmup) != warmup or warmup < 3:
            raise ValueError(f"warmup must be an integer >= 3, got {warmup!r}")
        self.warmup = int(warmup)
        # Right after the warm-up every run is at most `warmup` long: a window as long would read as a change.
        if int(window) != window or not 1 <= window < min(self.max_run_length, self.warmup):
            raise ValueError(f"window must be an integer >= 1 and below max_run_length and warmup, got {window!r}")
        self.window = int(window)
        self._given_threshold = None if threshold is None else check_probability("threshold", threshold)
        self._threshold = threshold_for_arl(self._arl) if self._given_threshold is None else self._given_threshold
        self._model = _Model(self.max_run_length, 1.0 / self.expected_run_length, self.window)
        self._run = _Stream(self._model)
        self.reset()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"arl": 500.0, "max_run_length": 50, "window": 10, "warmup": 20}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"arl": 0.5}, "arl"), ({"arl": float("nan")}, "arl"),
                ({"expected_run_length": 1.0}, "expected_run_length"), ({"max_run_length": 1}, "max_run_length"),
                ({"window": 0}, "window"), ({"window": 50}, "window"), ({"window": 20}, "window"),
                ({"warmup": 2}, "warmup"),
                ({"threshold": 1.0}, "threshold")]

    # --- contract -----------------------------------------------------------------------------------------

    @property
    def arl(self) -> float:
        return self._arl

    @property
    def statistic(self) -> float:
        return self._stat

    @property
    def threshold(self) -> float:
        return self._threshold

    def reset(self) -> None:
        self._n = 0
        self._alarm = False
        self._stat = 0.0
        self._buffer: list[float] = []
        self._loc = 0.0
        self._scale = 1.0
        self._live = False  # the warm-up is over and the recursion runs

    def update(self, x: float) -> bool:
        if self._alarm:
            self.reset()
        self._n += 1
        if self._n <= self.warmup:
            self._buffer.append(float(x))
            if self._n == self.warmup:
                self._start()
            return False
        # the kernel of update_many, on a block of one observation: the same numbers
        self._alarm = self._run.run(np.array([float(x)]), self._loc, self._scale, self._threshold) == 0
        self._stat = self._run.stat
        return self._alarm

    def update_many(self, xs: ArrayLike) -> NDArray[np.intp]:
        arr = np.asarray(xs, dtype=np.float64).ravel()
        alarms: list[int] = []
        i = 0
        while i < arr.size:
            if self._alarm:
                self.reset()
            if self._n < self.warmup:  # the warm-up takes a block at once
                take = min(self.warmup - self._n, arr.size - i)
                self._buffer.extend(arr[i:i + take].tolist())
                self._n += take
                i += take
                if self._n == self.warmup:
                    self._start()
                continue
            hit = self._run.run(arr[i:], self._loc, self._scale, self._threshold)
            self._stat = self._run.stat
            if hit < 0:
                self._n += arr.size - i
                break
            self._n += hit + 1
            self._alarm = True
            alarms.append(i + hit)
            i += hit + 1
        return np.asarray(alarms, dtype=np.intp)

    def _start(self) -> None:
        """End of the warm-up: standardize it and run the model over it (no alarm can come from it)."""
        buf = np.asarray(self._buffer, dtype=np.float64)
        self._loc, self._scale = robust_location_scale(buf)
        self._buffer = []
        self._run.start(float((buf[0] - self._loc) / self._scale))
        self._run.run(buf[1:], self._loc, self._scale, math.inf)
        self._stat = self._run.stat
        self._live = True

    def _posterior(self) -> NDArray[np.float64] | None:
        """The run-length posterior (entry ``k``: the run holds ``k + 1`` observations), None in the warm-up."""
        return self._run.posterior() if self._live else None

    # --- checkpoints --------------------------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        return {"arl": self._arl, "expected_run_length": self.expected_run_length,
                "max_run_length": self.max_run_length, "window": self.window, "warmup": self.warmup,
                "threshold": self._given_threshold}

    def _vars(self) -> dict[str, Any]:
        return {"n": self._n, "alarm": self._alarm, "statistic": self._stat, "buffer": list(self._buffer),
                "loc": self._loc, "scale": self._scale, "run": self._run.to_vars() if self._live else None}

    def _load(self, state: dict[str, Any]) -> None:
        self._n = int(state["n"])
        self._alarm = bool(state["alarm"])
        self._stat = float(state["statistic"])
        self._buffer = [float(v) for v in state["buffer"]]
        self._loc = float(state["loc"])
        self._scale = float(state["scale"])
        self._live = state["run"] is not None
        if self._live:
            self._run.load(self._n, self._stat, state["run"])
