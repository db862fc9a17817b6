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

Cost: one numpy step of ``O(max_run_length)`` per observation, about 60 us at the default 200 on one core
(some 17,000 observations a second). ``update_many`` loops over the same step (only the warm-up is taken as
a block), since each observation's posterior depends on the last: it is no faster than ``update``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

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


class _Model:
    """Constants of the recursion for one ``(max_run_length, hazard)``; :meth:`step` runs a batch of streams.

    The slot ``k`` holds the run of ``k + 1`` observations, whose Normal-Gamma posterior has the known
    ``kappa = KAPPA0 + k + 1`` and ``alpha = ALPHA0 + (k + 1) / 2``: only its mean ``mu`` and ``beta`` are
    state. Once folded, the last slot holds the run of all ``t`` observations since the start.
    """

    def __init__(self, max_run_length: int, hazard: float) -> None:
        self.r = max_run_length
        self.h = hazard
        n = np.arange(1, max_run_length + 1, dtype=np.float64)
        self.kappa = KAPPA0 + n
        self.alpha = ALPHA0 + n / 2.0
        self.a5 = self.alpha + 0.5
        # Student t predictive: 2 alpha degrees of freedom, scale^2 = beta c1, c1 = (kappa + 1) / (alpha kappa);
        # log density = C - log(beta) / 2 - (alpha + 1/2) log1p((z - mu)^2 / (beta c2)), c2 = 2 alpha c1.
        self.c2 = np.empty(max_run_length)
        self.cc = np.empty(max_run_length)
        self.shrink = np.empty(max_run_length - 1)  # 1 / (kappa + 1) of the slots that grow
        self.spread = np.empty(max_run_length - 1)  # kappa / (2 (kappa + 1))
        self._set(slice(None), self.kappa, self.alpha)
        self.shrink[:] = 1.0 / (self.kappa[:-1] + 1.0)
        self.spread[:] = self.kappa[:-1] / (2.0 * (self.kappa[:-1] + 1.0))
        c1 = BETA0 * (KAPPA0 + 1.0) / (ALPHA0 * KAPPA0)
        self.prior_c2 = 2.0 * ALPHA0 * c1
        self.prior_c = _t_const(ALPHA0) - 0.5 * math.log(c1)
        self._folded_t = -1

    def _set(self, k: slice | int, kappa: Any, alpha: Any) -> None:
        c1 = (kappa + 1.0) / (alpha * kappa)
        self.c2[k] = 2.0 * alpha * c1
        self.cc[k] = (np.vectorize(_t_const)(alpha) if isinstance(k, slice) else _t_const(float(alpha))) \
            - 0.5 * np.log(c1)
        self.a5[k] = alpha + 0.5

    def start(self, z: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """The state ``(p, mu, beta)`` after the first observation ``z`` (shape ``(B,)``) of each stream."""
        b = z.shape[0]
        p = np.zeros((b, self.r))
        p[:, 0] = 1.0
        mu = np.zeros((b, self.r))
        beta = np.full((b, self.r), BETA0)
        mu[:, 0] = z / (KAPPA0 + 1.0)
        beta[:, 0] = BETA0 + KAPPA0 * z * z / (2.0 * (KAPPA0 + 1.0))
        return p, mu, beta

    def step(self, p: NDArray[np.float64], mu: NDArray[np.float64], beta: NDArray[np.float64], t: int,
             z: NDArray[np.float64], window: int) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                                           NDArray[np.float64], NDArray[np.float64]]:
        """One observation ``z`` (shape ``(B,)``) of streams in the state after ``t >= 1`` observations.

        Returns the new ``(p, mu, beta)`` and ``P(run length <= window)`` of each stream.
        """
        r = self.r
        folded = t >= r  # the last slot is live and holds the run of all t observations
        if folded and self._folded_t != t:
            self._set(r - 1, KAPPA0 + t, ALPHA0 + t / 2.0)
            self._folded_t = t
        zc = z[:, None]
        d = zc - mu
        logpred = self.cc - 0.5 * np.log(beta) - self.a5 * np.log1p(d * d / (beta * self.c2))
        prior = self.prior_c - (ALPHA0 + 0.5) * np.log1p(z * z / self.prior_c2)
        live = min(t, r)
        m = np.maximum(logpred[:, :live].max(axis=1), prior)
        g = p * np.exp(logpred - m[:, None])
        new_p = np.empty_like(p)
        new_p[:, 0] = np.exp(prior - m) * self.h
        np.multiply(g[:, :-1], 1.0 - self.h, out=new_p[:, 1:])
        if folded:
            new_p[:, -1] += g[:, -1] * (1.0 - self.h)
        new_p /= new_p.sum(axis=1, keepdims=True)
        new_mu = np.empty_like(mu)
        new_beta = np.empty_like(beta)
        new_mu[:, 0] = z / (KAPPA0 + 1.0)
        new_beta[:, 0] = BETA0 + KAPPA0 * z * z / (2.0 * (KAPPA0 + 1.0))
        dg = d[:, :-1]
        new_mu[:, 1:] = mu[:, :-1] + dg * self.shrink
        new_beta[:, 1:] = beta[:, :-1] + dg * dg * self.spread
        if folded:
            kappa = KAPPA0 + t
            new_mu[:, -1] = mu[:, -1] + d[:, -1] / (kappa + 1.0)
            new_beta[:, -1] = beta[:, -1] + kappa * d[:, -1] ** 2 / (2.0 * (kappa + 1.0))
        stat = new_p[:, :window].sum(axis=1)
        return new_p, new_mu, new_beta, stat


def _t_const(alpha: float) -> float:
    """log normalising constant of a Student t with ``2 alpha`` degrees of freedom and unit scale."""
    return math.lgamma(alpha + 0.5) - math.lgamma(alpha) - 0.5 * math.log(2.0 * math.pi * alpha)


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
        self._model = _Model(self.max_run_length, 1.0 / self.expected_run_length)
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
        self._p: NDArray[np.float64] | None = None
        self._mu: NDArray[np.float64] | None = None
        self._beta: NDArray[np.float64] | None = None

    def update(self, x: float) -> bool:
        if self._alarm:
            self.reset()
        self._n += 1
        if self._n <= self.warmup:
            self._buffer.append(float(x))
            if self._n == self.warmup:
                self._start()
            return False
        z = np.array([(float(x) - self._loc) / self._scale])
        self._feed(z)
        self._alarm = self._stat >= self._threshold
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
                self._buffer.extend(float(v) for v in arr[i:i + take])
                self._n += take
                i += take
                if self._n == self.warmup:
                    self._start()
                continue
            z = (arr[i:i + 1] - self._loc) / self._scale
            self._n += 1
            self._feed(z)
            if self._stat >= self._threshold:
                self._alarm = True
                alarms.append(i)
            i += 1
        return np.asarray(alarms, dtype=np.intp)

    # --- the recursion ------------------------------------------------------------------------------------

    def _start(self) -> None:
        """End of the warm-up: standardize it and run the model over it (no alarm can come from it)."""
        buf = np.asarray(self._buffer, dtype=np.float64)
        self._loc, self._scale = robust_location_scale(buf)
        self._buffer = []
        zs = (buf - self._loc) / self._scale
        self._p, self._mu, self._beta = self._model.start(zs[:1])
        self._stat = 1.0
        for t in range(1, zs.size):
            self._p, self._mu, self._beta, stat = self._model.step(self._p, self._mu, self._beta, t, zs[t:t + 1],
                                                                   self.window)
            self._stat = float(stat[0])

    def _feed(self, z: NDArray[np.float64]) -> None:
        assert self._p is not None and self._mu is not None and self._beta is not None
        t = self._n - 1  # observations the model has seen before this one
        self._p, self._mu, self._beta, stat = self._model.step(self._p, self._mu, self._beta, t, z, self.window)
        self._stat = float(stat[0])

    # --- checkpoints --------------------------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        return {"arl": self._arl, "expected_run_length": self.expected_run_length,
                "max_run_length": self.max_run_length, "window": self.window, "warmup": self.warmup,
                "threshold": self._given_threshold}

    def _vars(self) -> dict[str, Any]:
        live = self._p is not None
        return {"n": self._n, "alarm": self._alarm, "statistic": self._stat, "buffer": list(self._buffer),
                "loc": self._loc, "scale": self._scale,
                "p": self._p[0].tolist() if live else None,  # type: ignore[index]
                "mu": self._mu[0].tolist() if live else None,  # type: ignore[index]
                "beta": self._beta[0].tolist() if live else None}  # type: ignore[index]

    def _load(self, state: dict[str, Any]) -> None:
        self._n = int(state["n"])
        self._alarm = bool(state["alarm"])
        self._stat = float(state["statistic"])
        self._buffer = [float(v) for v in state["buffer"]]
        self._loc = float(state["loc"])
        self._scale = float(state["scale"])
        if state["p"] is None:
            self._p = self._mu = self._beta = None
        else:
            self._p = np.asarray(state["p"], dtype=np.float64)[None, :]
            self._mu = np.asarray(state["mu"], dtype=np.float64)[None, :]
            self._beta = np.asarray(state["beta"], dtype=np.float64)[None, :]
