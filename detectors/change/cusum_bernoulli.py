"""The CUSUM for a change of the rate of a 0/1 stream: :class:`BernoulliCUSUM`.

Its threshold is the smallest whose lattice lower bound on the ARL reaches the target
(:func:`detectors.change.arl.bernoulli_threshold`); the recursion is :class:`detectors.change.cusum.CUSUMDetector`'s.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.base import check_positive, check_probability
from detectors.change.arl import bernoulli_steps, bernoulli_threshold
from detectors.change.cusum import CUSUMDetector, check_warmup
from detectors.change.lindley import F64, SCALE, first_rows, q1

__all__ = ["BernoulliCUSUM"]


class BernoulliCUSUM(CUSUMDetector):
    """CUSUM for a change of the rate of a 0/1 stream from ``p0`` to ``p1 = p0 * ratio``.

    The increments are the log-likelihood ratios ``log(p1/p0)`` for a 1 and ``log((1-p1)/(1-p0))`` for a 0;
    the statistic is in nats. ``ratio > 1`` watches for an increase, ``ratio < 1`` for a decrease. When
    ``p0 * ratio`` would come too close to 1 (``p0 > 1 / (ratio + 1)``) the non-event rate is divided by
    ``ratio`` instead: ``p1 = min(ratio * p0, 1 - (1 - p0) / ratio)``.

    Parameters
    ----------
    p0:
        The in-control rate; ``None`` estimates it at every (re)start from the next ``warmup``
        observations: ``k / warmup`` for ``k`` events, but at least half an event (``0.5 / warmup``) when
        watching for an increase, at most ``warmup - 0.5`` events when watching for a decrease. (A warm-up
        of all ones leaves no room for an increase: the detector then stays silent until reset.)
    ratio:
        The rate ratio to detect (not 1).
    warmup:
        Warm-up length when ``p0`` is estimated.
    arl:
        Average run length to a false alarm on an in-control stream that the threshold is set for.

    Guarantee and threshold. With ``p0`` given, the ARL to a false alarm on an in-control stream is at least
    ``arl``, rigorously: the threshold is the smallest whose lattice lower bound on the ARL reaches ``arl``
    (see :func:`~detectors.change.arl.bernoulli_threshold`); it is lower than Lorden's ``log(arl)`` (6.45
    against 9.21 nats for 0.2 -> 0.4 at ``arl=10_000``), which it falls back to for rates below about 1e-4.

    With ``p0`` estimated it is approximate: the threshold is the one for the estimate, as if it were the
    truth (computed at the end of each warm-up, cached per event count). An underestimated rate shortens
    the runs and an overestimated one lengthens them more, so the mean run length stays above ``arl``
    (checked by simulation at 0.05 and 0.2), but the runs are more spread out than with a known rate: at
    ``arl=10_000``, p0 = 0.1 and the default 100-observation warm-up, a tenth of the runs end within about
    300 observations (1053 for a geometric law with mean 10,000). A longer warm-up narrows that.

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> x = np.concatenate([rng.random(2000) < 0.1, rng.random(500) < 0.2]).astype(float)  # doubles at 2000
    >>> det = BernoulliCUSUM(p0=0.1, ratio=2.0)
    >>> det.update_many(x)
    array([2110, 2188, 2265, 2342, 2378])
    >>> round(det.threshold, 2)
    5.64
    """

    name: ClassVar[str] = "bernoulli_cusum"
    kind: ClassVar[str] = "binary"

    def __init__(self, p0: float | None = None, ratio: float = 2.0, warmup: int = 100,
                 arl: float = 10_000.0) -> None:
        super().__init__(arl)
        r = check_positive("ratio", ratio)
        if r == 1.0:
            raise ValueError("ratio must differ from 1")
        self._ratio = r
        self._p00 = None if p0 is None else check_probability("p0", p0)
        self._warmup = check_warmup(warmup, 1)
        self.reset()

    def _p1(self, p0: float) -> float:
        if self._ratio < 1.0:
            return self._ratio * p0
        return min(self._ratio * p0, 1.0 - (1.0 - p0) / self._ratio)

    def _restart(self) -> None:
        super()._restart()
        self._k = 0
        self._seen = 0
        self._p0_hat: float | None = None
        self._set_rate(self._p00)

    def _set_rate(self, p0: float | None) -> None:
        self._p0 = p0
        if p0 is None:
            self._h = math.inf
            return
        p1 = self._p1(p0)
        if p1 == p0 or p0 <= 0.0 or p0 >= 1.0:  # no change of this kind is possible from p0: stay silent
            self._z_event = self._z_none = 0
            self._h = math.log(self._arl)
            return
        u1, u0 = bernoulli_steps(p0, p1)
        self._z_event, self._z_none = q1(u1 * SCALE), q1(u0 * SCALE)
        self._h = bernoulli_threshold(p0, p1, self._arl)

    def _estimate(self, k: int) -> float:
        w = self._warmup
        return max(k, 0.5) / w if self._ratio > 1.0 else min(k, w - 0.5) / w

    def _ready(self) -> bool:
        return self._p0 is not None

    def _warm(self, x: F64) -> int:
        take = x[: self._warmup - self._seen]
        _binary(take)
        self._k += int(np.count_nonzero(take))
        self._seen += take.size
        if self._seen == self._warmup:
            self._p0_hat = self._estimate(self._k)
            self._set_rate(self._p0_hat)
        return int(take.size)

    def _invariant(self) -> bool:
        return self._p00 is not None

    def _fill(self, x: F64, t: F64) -> None:
        _binary(x)
        np.multiply(x, float(self._z_event - self._z_none), out=t)  # exact: integers below 2**53
        np.add(t, float(self._z_none), out=t)

    def _q_one(self, x: float) -> int:
        if x != 0.0 and x != 1.0:
            raise ValueError(f"observations must be 0 or 1, got {x!r}")
        return self._z_event if x == 1.0 else self._z_none

    @property
    def threshold(self) -> float:
        """The alarm threshold (nats) of this segment; ``inf`` while the warm-up estimates ``p0``."""
        return self._h

    @property
    def p0(self) -> float | None:
        """The in-control rate in use (given, or this segment's estimate; None during a warm-up)."""
        return self._p0

    @property
    def p1(self) -> float | None:
        return None if self._p0 is None else self._p1(self._p0)

    def params(self) -> dict[str, Any]:
        return {"p0": self._p00, "ratio": self._ratio, "warmup": self._warmup, "arl": self._arl}

    def _vars(self) -> dict[str, Any]:
        return {**super()._vars(), "k": self._k, "seen": self._seen, "p0_hat": self._p0_hat}

    def _load(self, state: dict[str, Any]) -> None:
        super()._load(state)
        self._k = int(state["k"])
        self._seen = int(state["seen"])
        self._p0_hat = None if state["p0_hat"] is None else float(state["p0_hat"])
        self._set_rate(self._p00 if self._p00 is not None else self._p0_hat)

    def first_alarms(self, streams: ArrayLike) -> NDArray[np.intp]:
        """For each row of a 2-D 0/1 array, where a fresh detector with these parameters first alarms (-1: never).

        Vectorized across rows; the detector's own state is untouched; equals ``update_many`` on each row.
        """
        x = np.array(streams, dtype=np.float64, ndmin=2)
        _binary(x)
        rows, cols = x.shape
        w = self._warmup if self._p00 is None else 0
        if cols <= w:
            return np.full(rows, -1, dtype=np.intp)
        ks = np.count_nonzero(x[:, :w], axis=1) if w else np.zeros(rows, dtype=np.int64)
        ze = np.empty(rows, dtype=np.int64)
        zn = np.empty(rows, dtype=np.int64)
        hs = np.empty(rows, dtype=np.int64)
        probe = BernoulliCUSUM(p0=self._p00, ratio=self._ratio, warmup=self._warmup, arl=self._arl)
        for k in np.unique(ks):
            probe._set_rate(self._p00 if self._p00 is not None else self._estimate(int(k)))
            sel = ks == k
            ze[sel], zn[sel], hs[sel] = probe._z_event, probe._z_none, probe._h_int()
        z = np.empty((rows, cols - w + 1), dtype=np.int64)
        z[:, 1:] = x[:, w:]
        z[:, 1:] *= (ze - zn)[:, None]
        z[:, 1:] += zn[:, None]
        first = first_rows(z, hs[:, None])
        return np.where(first >= 0, first + w, -1).astype(np.intp)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"warmup": 20, "arl": 1000.0}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"arl": 1.0}, "arl"), ({"arl": float("inf")}, "arl"), ({"ratio": 1.0}, "ratio"),
                ({"ratio": -2.0}, "ratio"), ({"p0": 1.5}, "p0"), ({"p0": 0.0}, "p0"), ({"warmup": 0}, "warmup"),
                ({"warmup": 2.5}, "warmup")]


def _binary(x: F64) -> None:
    if x.size and not np.all((x == 0.0) | (x == 1.0)):
        raise ValueError("observations must be 0 or 1")
