"""The CUSUM for a shift of the mean of a Gaussian stream: :class:`GaussianCUSUM`.

Its threshold is the root of the exact ARL of the Gaussian CUSUM (:func:`detectors.change.arl.gaussian_threshold`),
raised when ``mu`` or ``sigma`` come from a warm-up (:func:`detectors.change.arl.gaussian_threshold_est`); the
recursion is :class:`detectors.change.cusum.CUSUMDetector`'s.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.base import check_finite, check_positive
from detectors.change.arl import H_MAX, gaussian_threshold_est, robust_rows
from detectors.change.cusum import CUSUMDetector, Direction, check_sides, check_warmup
from detectors.change.lindley import F64, SCALE, q1, quantize

__all__ = ["GaussianCUSUM"]


class GaussianCUSUM(CUSUMDetector):
    """CUSUM for a shift of ``delta`` standard deviations in the mean of a Gaussian stream.

    The increments are the log-likelihood ratios ``delta * u - delta**2 / 2`` (up) and ``-delta * u -
    delta**2 / 2`` (down), with ``u = (x - mu) / sigma``; the statistic is in nats.

    Parameters
    ----------
    delta:
        The shift to detect, in units of sigma (the CUSUM is optimal for a shift of exactly that size and
        still detects others).
    direction:
        ``"up"``, ``"down"`` or ``"both"`` (two one-sided CUSUMs; an alarm from either).
    mu, sigma:
        The in-control mean and standard deviation. Either left ``None`` is estimated at every (re)start from
        the next ``warmup`` observations, robustly: the median, and 1.4826 times the median absolute
        deviation (the standard deviation if that is 0; a constant warm-up makes any different value alarm).
    warmup:
        Warm-up length (used only when ``mu`` or ``sigma`` is estimated). No alarm is possible during it.
        The default of 200 keeps 9 segments in 10 at an ARL of at least ``arl / 2`` (see below).
    arl:
        Average run length to a false alarm on an in-control stream that the threshold is set for.

    Guarantee and threshold. With ``mu`` and ``sigma`` given, the average run length to a false alarm of an
    in-control Gaussian stream is at least ``arl``: the threshold is the root of the exact ARL (the CUSUM's
    integral equation, see :func:`~detectors.change.arl.gaussian_arl`), ``2 * arl`` per side when two-sided. That is
    sharper than Lorden's ``log(arl)`` (7.36 nats against 9.21 at ``arl=10_000``, ``delta=1``: about 4
    observations less delay for a 1-sigma shift), and safe where Siegmund's approximation is not.

    With estimated parameters the guarantee is weaker, and it is stated over warm-ups. The estimates' errors
    stay for the whole segment (up to the next alarm): given them, the segment is a CUSUM whose increments
    have the wrong mean and scale, with its own ARL, the *conditional* ARL. It is below ``arl`` when sigma
    comes out low or the mean misplaced (always one side of a two-sided detector), far above it when sigma
    comes out high. The statistic uses the estimates as if they were exact, and the threshold is raised
    above the known-parameter one until, over in-control Gaussian warm-ups:

    (i) at least 90 % of the warm-ups give a conditional ARL of at least ``arl / 2`` (its 10th percentile);
    (ii) at least half give one of at least ``arl`` (its median);
    (iii) the mean run length, counting any run beyond ``10 * arl`` as ``10 * arl``, is at least ``arl``.

    They are computed once per configuration from 8192 simulated Gaussian warm-ups (fixed seed, this
    estimator: so the 90 % is itself known to about 0.3 %, one standard error), with Siegmund's approximation
    scaled to the exact ARL (within 1.3 % of the integral equation on the lower half of the conditional
    ARLs). (i) is the one that binds at the default warm-up of
    200: at ``arl=10_000``, ``delta=1``, two-sided, ``h`` = 10.20 nats (8.06 with known parameters); over
    2000 fresh warm-ups the conditional ARL's 1st, 5th, 10th percentiles and median were 1330, 3120, 5400
    and 35,500 (9.5 % below 5000, 0.6 % below 1000), and the delay to a 1-sigma shift a median of 19 (a
    mean of 20.7). One-sided: ``h`` = 9.23 (7.36 known), 10th percentile 5440. The price is the warm-up:
    no alarm is possible during it, after every restart. A shorter one needs a much higher threshold for
    the same guarantee (two-sided: 12.57 at 100, 31.9 at 30; the constructor refuses one above 4096
    nats, e.g. ``delta=0.5`` with a 30-observation warm-up at ``arl=1e6``); a longer one, a lower
    threshold (8.77 at 500). For the guarantee of the known-parameter case, give ``mu`` and ``sigma``.
    Gaussian data only.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> x = np.concatenate([rng.normal(5.0, 2.0, 500), rng.normal(7.0, 2.0, 100)])  # +1 sigma at 500
    >>> det = GaussianCUSUM(delta=1.0, direction="up", mu=5.0, sigma=2.0)
    >>> det.update_many(x)  # the first alarm 19 observations in; then it restarts, and alarms again
    array([518, 527, 539, 549, 561, 571])
    >>> round(det.threshold, 3), det.alarm, det.n  # 28 observations since the last restart
    (7.361, False, 28)
    """

    name: ClassVar[str] = "gaussian_cusum"
    kind: ClassVar[str] = "real"

    def __init__(self, delta: float = 1.0, direction: Direction = "both", mu: float | None = None,
                 sigma: float | None = None, warmup: int = 200, arl: float = 10_000.0) -> None:
        super().__init__(arl)
        self._delta = check_positive("delta", delta)
        self._up, self._down = check_sides(direction)
        self._direction = direction
        self._mu0 = None if mu is None else check_finite("mu", mu)
        self._sigma0 = None if sigma is None else check_positive("sigma", sigma)
        self._warmup = check_warmup(warmup, 2)
        if self._delta > 64.0:
            raise ValueError(f"delta must be at most 64 (sigma), got {delta!r}")
        self._cu = math.ceil(self._delta * self._delta / 2.0 * SCALE)
        self._cd = self._cu + 1
        est_mu, est_sigma = mu is None, sigma is None
        self._h = gaussian_threshold_est(self._arl, self._delta, self._up, self._down, self._warmup, est_mu,
                                          est_sigma)
        if self._h > H_MAX:
            raise ValueError(f"arl={arl!r} needs a threshold above {H_MAX} nats")
        self.reset()

    def _restart(self) -> None:
        super()._restart()
        self._buf: list[float] = []
        self._mu_hat: float | None = None
        self._sigma_hat: float | None = None
        self._set_coefficients()

    def _set_coefficients(self) -> None:
        mu = self._mu0 if self._mu0 is not None else self._mu_hat
        sigma = self._sigma0 if self._sigma0 is not None else self._sigma_hat
        self._live = mu is not None and sigma is not None
        if mu is not None and sigma is not None:
            self._m = mu
            self._a = self._delta / sigma * SCALE

    def _ready(self) -> bool:
        return self._live

    def _warm(self, x: F64) -> int:
        take = x[: self._warmup - len(self._buf)]
        self._buf.extend(take.tolist())
        if len(self._buf) == self._warmup:
            med, scale = robust_rows(np.asarray(self._buf)[None, :])
            self._mu_hat = float(med[0]) if self._mu0 is None else None
            self._sigma_hat = float(scale[0]) if self._sigma0 is None else None
            self._set_coefficients()
        return int(take.size)

    def _invariant(self) -> bool:
        return self._mu0 is not None and self._sigma0 is not None

    def _fill(self, x: F64, t: F64) -> None:
        np.subtract(x, self._m, out=t)
        np.multiply(t, self._a, out=t)

    def _q_one(self, x: float) -> int:
        return q1((x - self._m) * self._a)

    # -- read-only --------------------------------------------------------------------------------------------
    @property
    def delta(self) -> float:
        return self._delta

    @property
    def mu(self) -> float | None:
        """The in-control mean in use (given, or this segment's estimate; None during a warm-up)."""
        return self._m if self._live else None

    @property
    def sigma(self) -> float | None:
        """The in-control standard deviation in use (None during a warm-up)."""
        return self._delta / self._a * SCALE if self._live else None

    def params(self) -> dict[str, Any]:
        return {"delta": self._delta, "direction": self._direction, "mu": self._mu0, "sigma": self._sigma0,
                "warmup": self._warmup, "arl": self._arl}

    def _vars(self) -> dict[str, Any]:
        return {**super()._vars(), "buffer": list(self._buf), "mu_hat": self._mu_hat, "sigma_hat": self._sigma_hat}

    def _load(self, state: dict[str, Any]) -> None:
        super()._load(state)
        self._buf = [float(v) for v in state["buffer"]]
        self._mu_hat = None if state["mu_hat"] is None else float(state["mu_hat"])
        self._sigma_hat = None if state["sigma_hat"] is None else float(state["sigma_hat"])
        self._set_coefficients()

    def first_alarms(self, streams: ArrayLike) -> NDArray[np.intp]:
        """For each row of a 2-D array, where a fresh detector with these parameters first alarms (-1: never).

        Vectorized across rows (for calibration by simulation); the detector's own state is untouched. The
        result equals ``update_many`` on each row, warm-up included.
        """
        x = np.array(streams, dtype=np.float64, ndmin=2)
        rows, cols = x.shape
        w = self._warmup if (self._mu0 is None or self._sigma0 is None) else 0
        if cols <= w:
            return np.full(rows, -1, dtype=np.intp)
        mu = np.full(rows, 0.0 if self._mu0 is None else self._mu0)
        sigma = np.full(rows, 1.0 if self._sigma0 is None else self._sigma0)
        if w:
            med, scale = robust_rows(np.ascontiguousarray(x[:, :w]))
            mu = med if self._mu0 is None else mu
            sigma = scale if self._sigma0 is None else sigma
        a = (self._delta / sigma * SCALE)[:, None]
        q = np.empty((rows, cols - w), dtype=np.int64)
        quantize((x[:, w:] - mu[:, None]) * a, q)
        return self._first_alarm_rows(q, w)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"warmup": 10, "arl": 100.0}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"arl": 1.0}, "arl"), ({"arl": -5.0}, "arl"), ({"delta": 0.0}, "delta"),
                ({"delta": float("nan")}, "delta"), ({"delta": 100.0}, "delta"),
                ({"direction": "sideways"}, "direction"), ({"mu": float("inf")}, "mu"), ({"sigma": 0.0}, "sigma"),
                ({"warmup": 1}, "warmup"), ({"warmup": 3.0}, "warmup")]
