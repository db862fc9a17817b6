"""Page-Hinkley test with a calibrated threshold: lambda from the target ARL and the noise scale.

The classic Page-Hinkley test (Page 1954, Hinkley 1971) accumulates ``m_T = sum_t (x_t - xbar_t - delta)``,
the deviations from the running mean less a tolerance, and alarms when ``m_T - min_t m_t`` exceeds a
threshold ``lambda``, which implementations leave as a magic number (river: ``threshold=50``,
``delta=0.005``, in the data's units). Here:

* each deviation ``x_t - xbar_t`` is rescaled by ``sqrt(t / (t - 1))``. That makes it the *recursive
  residual* ``(x_t - xbar_{t-1}) sqrt((t-1)/t)``, and for independent Gaussian observations with a constant
  mean these are independent ``N(0, sigma^2)`` exactly, whatever the mean: the test needs no estimate of
  the mean, and its statistic is a CUSUM of i.i.d. increments, whose ARL can be computed;
* ``delta`` is in units of the noise scale ``sigma`` (given, or estimated by the MAD of a warm-up), and
  ``lambda = h * sigma / (2 delta)`` where ``h`` is the exact Gaussian CUSUM threshold for ``arl`` (see
  (:mod:`detectors.change.arl`): the test with tolerance ``delta`` is the log-likelihood-ratio CUSUM for a shift of
  ``2 delta`` sigma, in the data's units.

river's ``alpha`` (a forgetting factor on ``m_T``) is left out on purpose: with it ``m_T`` is no longer a
random walk, the increments' sum decays, and no ARL for it is known that could set the threshold.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.base import check_positive
from detectors.change.arl import H_MAX, gaussian_threshold_est, robust_rows
from detectors.change.cusum import CUSUMDetector, Direction, check_sides, check_warmup
from detectors.change.lindley import F64, SCALE, q1, quantize

__all__ = ["PageHinkley"]


class PageHinkley(CUSUMDetector):
    """Page-Hinkley test for a mean change of more than ``delta`` noise standard deviations, calibrated to ``arl``.

    Parameters
    ----------
    delta:
        Tolerance, in units of sigma: in control, mean moves of up to ``delta`` sigma are ignored; the
        test is tuned for a shift of ``2 * delta`` sigma (the default 0.5 for a 1-sigma shift).
    direction:
        ``"up"``, ``"down"`` or ``"both"``.
    sigma:
        The noise standard deviation; ``None`` estimates it at every (re)start from the first ``warmup``
        observations (1.4826 times their median absolute deviation).
    warmup:
        Warm-up length when ``sigma`` is estimated. No alarm is possible during it (with ``sigma`` given, the
        first observation only starts the running mean). The default of 200 keeps 9 segments in 10 at an
        ARL of at least ``arl / 2`` (see below).
    arl:
        Average run length to a false alarm on an in-control stream that the threshold is set for.

    The statistic is ``m_T - min_t m_t`` in the data's units; the threshold ``lambda = h * sigma / (2 delta)``.

    Guarantee. With ``sigma`` given, the ARL to a false alarm on an in-control Gaussian stream (independent
    observations, any constant mean) is at least ``arl``: the increments are exactly i.i.d. Gaussian (the
    recursive residuals) and ``h`` is the root of the exact CUSUM ARL (``2 * arl`` per side, two-sided,
    with a 1 % margin). The mean is never estimated, so its error costs nothing.

    With ``sigma`` estimated it is weaker, stated over warm-ups, and only through sigma: the MAD of the
    warm-up is independent of every later residual (it depends on the warm-up only through deviations from
    its mean), so given the estimate the increments are i.i.d. Gaussian with a wrong scale, and the segment
    (up to the next alarm) has its own, *conditional*, ARL: shorter for a low estimate, far longer for a high
    one. The threshold is raised as for :class:`~detectors.change.cusum_gaussian.GaussianCUSUM` with an estimated sigma,
    until over in-control Gaussian warm-ups (i) at least 90 % give a conditional ARL of at least ``arl / 2``,
    (ii) at least half give one of at least ``arl``, and (iii) the mean run length (runs beyond ``10 * arl``
    counted as ``10 * arl``) is at least ``arl``. (i) binds at the default warm-up of 200: ``h`` = 9.12 nats
    at ``arl=10_000`` (8.06 with sigma given); over 2000 fresh warm-ups the conditional ARL's 1st, 5th and
    10th percentiles and median were 1810, 3330, 4750 and 25,900 (10.6 % below 5000, 0.2 % below 1000).
    Shorter warm-ups need a higher threshold (10.08 at 100, 14.01 at 30), longer ones a lower (8.40 at 500).

    After a shift the running mean slowly absorbs the new level, so the Page-Hinkley test detects a change
    a little later than a CUSUM that knows the in-control mean, the more so the sooner after a restart.

    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> x = np.concatenate([rng.normal(100.0, 4.0, 1000), rng.normal(96.0, 4.0, 200)])  # -1 sigma at 1000
    >>> ph = PageHinkley(delta=0.5, direction="both")
    >>> ph.update_many(x)  # one alarm; the restart after it learns the new level (a new warm-up)
    array([1015])
    >>> round(ph.mean, 1), ph.n, ph.sigma  # still in the warm-up: 184 of 200 observations
    (95.3, 184, None)
    """

    name: ClassVar[str] = "page_hinkley"
    kind: ClassVar[str] = "real"

    def __init__(self, delta: float = 0.5, direction: Direction = "both", sigma: float | None = None,
                 warmup: int = 200, arl: float = 10_000.0) -> None:
        super().__init__(arl)
        self._delta = check_positive("delta", delta)
        self._up, self._down = check_sides(direction)
        self._direction = direction
        self._sigma0 = None if sigma is None else check_positive("sigma", sigma)
        self._warmup = check_warmup(warmup, 2)
        if self._delta > 32.0:
            raise ValueError(f"delta must be at most 32 (sigma), got {delta!r}")
        self._w = self._warmup if sigma is None else 1
        self._h = gaussian_threshold_est(self._arl, 2.0 * self._delta, self._up, self._down, self._w, False,
                                          sigma is None)
        if self._h > H_MAX:
            raise ValueError(f"arl={arl!r} needs a threshold above {H_MAX} nats")
        self._cu = math.ceil(2.0 * self._delta * self._delta * SCALE)  # (2 delta)**2 / 2 nats
        self._cd = self._cu + 1
        self.reset()

    def _restart(self) -> None:
        super()._restart()
        self._t = 0
        self._sum = 0.0
        self._buf: list[float] = []
        self._sigma_hat: float | None = None
        self._set_scale()

    def _set_scale(self) -> None:
        sigma = self._sigma0 if self._sigma0 is not None else self._sigma_hat
        self._live = sigma is not None and self._t >= self._w
        self._a = 2.0 * self._delta / sigma * SCALE if sigma is not None else math.nan

    def _ready(self) -> bool:
        return self._live

    def _warm(self, x: F64) -> int:
        take = x[: self._w - self._t]
        if take.size:
            self._sum = float(np.cumsum(np.concatenate([[self._sum], take]))[-1])
            self._t += int(take.size)
            if self._sigma0 is None:
                self._buf.extend(take.tolist())
        if self._t == self._w and self._sigma0 is None:
            self._sigma_hat = float(robust_rows(np.asarray(self._buf)[None, :])[1][0])
        self._set_scale()
        return int(take.size)

    _elementwise = False  # the running mean makes each increment depend on the observations before it

    def _fill(self, x: F64, t: F64) -> None:
        n = x.size
        cs = np.empty(n + 1)
        cs[0] = self._sum
        cs[1:] = x
        np.cumsum(cs, out=cs)  # cs[j]: the sum before x[j], added in order as update() does
        self._cs = cs
        tp = np.arange(self._t, self._t + n, dtype=np.float64)
        np.divide(cs[:n], tp, out=t)
        np.subtract(x, t, out=t)
        t *= np.sqrt(tp / (tp + 1.0))
        t *= self._a

    def _advance(self, k: int) -> None:
        self._sum = float(self._cs[k])
        self._t += k

    def _q_one(self, x: float) -> int:
        tp = self._t
        r = (x - self._sum / tp) * math.sqrt(tp / (tp + 1))
        self._sum += x
        self._t = tp + 1
        return q1(r * self._a)

    # -- read-only --------------------------------------------------------------------------------------------
    def _units(self) -> float:
        """Data units per nat: sigma / (2 delta)."""
        sigma = self.sigma
        return sigma / (2.0 * self._delta) if sigma is not None else math.nan

    @property
    def statistic(self) -> float:
        """``m_T - min_t m_t`` in the data's units (0 during a warm-up)."""
        s = max(self._s_up, self._s_down) / SCALE
        return s * self._units() if self._live else 0.0

    @property
    def threshold(self) -> float:
        """``lambda`` in the data's units (``inf`` while the warm-up estimates sigma)."""
        return self._h * self._units() if self._live else math.inf

    @property
    def threshold_nats(self) -> float:
        """The threshold of the equivalent log-likelihood-ratio CUSUM, ``h``."""
        return self._h

    @property
    def sigma(self) -> float | None:
        """The noise scale in use (given, or this segment's estimate)."""
        return self._sigma0 if self._sigma0 is not None else self._sigma_hat

    @property
    def mean(self) -> float | None:
        """The running mean since the last (re)start."""
        return self._sum / self._t if self._t else None

    def params(self) -> dict[str, Any]:
        return {"delta": self._delta, "direction": self._direction, "sigma": self._sigma0,
                "warmup": self._warmup, "arl": self._arl}

    def _vars(self) -> dict[str, Any]:
        return {**super()._vars(), "t": self._t, "sum": self._sum, "buffer": list(self._buf),
                "sigma_hat": self._sigma_hat}

    def _load(self, state: dict[str, Any]) -> None:
        super()._load(state)
        self._t = int(state["t"])
        self._sum = float(state["sum"])
        self._buf = [float(v) for v in state["buffer"]]
        self._sigma_hat = None if state["sigma_hat"] is None else float(state["sigma_hat"])
        self._set_scale()

    def first_alarms(self, streams: ArrayLike) -> NDArray[np.intp]:
        """For each row of a 2-D array, where a fresh detector with these parameters first alarms (-1: never).

        Vectorized across rows; the detector's own state is untouched; equals ``update_many`` on each row.
        """
        x = np.array(streams, dtype=np.float64, ndmin=2)
        rows, cols = x.shape
        w = self._w
        if cols <= w:
            return np.full(rows, -1, dtype=np.intp)
        given = self._sigma0
        sigma = robust_rows(np.ascontiguousarray(x[:, :w]))[1] if given is None else np.full(rows, given)
        a = (2.0 * self._delta / sigma * SCALE)[:, None]
        cs = np.cumsum(x, axis=1)  # cs[:, j - 1]: the sum of the first j observations
        tp = np.arange(w, cols, dtype=np.float64)
        q = np.empty((rows, cols - w), dtype=np.int64)
        quantize((x[:, w:] - cs[:, w - 1:cols - 1] / tp) * np.sqrt(tp / (tp + 1.0)) * a, q)
        return self._first_alarm_rows(q, w)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"warmup": 10, "arl": 100.0}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"arl": 0.5}, "arl"), ({"delta": -1.0}, "delta"), ({"direction": "left"}, "direction"),
                ({"sigma": -2.0}, "sigma"), ({"warmup": 1}, "warmup"), ({"delta": 40.0}, "delta")]
