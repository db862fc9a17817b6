"""A robust, self-calibrating detector of spikes and level shifts: ``vigil detect``'s default.

Each observation ``x`` is compared with the median of the ``reference`` observations before it; its
residual ``r = |x - median|`` raises an alarm when it is both

* the largest residual of the last ``arl`` observations (a *record* of the stream's own residuals: on any
  stream of i.i.d. continuous values, once ``arl`` residuals are in, an observation is the largest of its
  ``arl + 1`` with probability ``1 / (arl + 1)``, whatever the law, heavy tails and skew included), and
* at least ``floor`` robust standard deviations of the reference (1.4826 times its MAD), which holds the
  false alarms down while there are still few residuals to compare with.

The first rule calibrates the detector to each series by itself: a series with frequent large moves (a
bursty count, a square wave) must move further than it ever has lately; the second makes a quiet series'
first large move count. ``floor`` is set from ``arl`` by :data:`CALIBRATION`, so that the average run
length to the first false alarm, from a fresh start on an in-control (i.i.d.) normal stream, is ``arl``.
A spike is one large residual; a level shift is a large residual at its first observation (and for the
next ``reference / 2`` observations, until the median moves).

After an alarm the detector restarts its reference: the next ``reference`` observations refill it (no
alarm meanwhile) so that a new level becomes the reference. The record of residuals (the last ``arl``
observations' largest, kept in a monotone queue, typically a few dozen numbers) is *not* forgotten: it is
the detector's knowledge of how far the series moves, which a change of level does not invalidate; the
alarming residual enters it, so a later anomaly must be at least as large to alarm again within ``arl``
observations. :meth:`reset` forgets everything.

``update_many`` is vectorized by blocks of up to 512 observations: the medians and MADs of the sliding
reference come from ``numpy.partition`` on a sliding window view, the record from a search in the queue and
a running maximum; a block is cut short at its first alarm (the reference restarts there), so the cost is
about ``O(reference)`` numpy work per observation plus one block per alarm.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from detectors.base import ChangeDetector, check_positive

__all__ = ["CALIBRATION", "RobustShift", "floor_for_arl"]

#: ``(arl, floor)`` for the default ``reference=101, warmup=100``, interpolated linearly in ``log(arl)``
#: (extrapolated from the end segments, and never below 0). Produced by ``benchmarks/calibrate_bocpd.py
#: --detector robust_shift`` (1,000 standard normal streams of 50,000 observations, seed 20261126, 91 s on
#: 2 cores): for each ``arl``, every stream runs the detector's arithmetic from a fresh start and records,
#: for a grid of floors (step 0.02), its first alarm; the ARL of a floor is the mean first-alarm time, the
#: streams that did not alarm censored (exponential-tail estimate). The smallest ARL the default structure
#: can have is about 300-800 observations (no alarm before observation 202, then the record alone).
CALIBRATION: tuple[tuple[float, float], ...] = (
    (1_000.0, 3.237),
    (3_000.0, 3.693),
    (10_000.0, 4.06),
    (30_000.0, 4.406),
    (100_000.0, 4.829),
    (300_000.0, 5.276),
    (1_000_000.0, 5.712),
)

_MAD_TO_SD = 1.482602218505602
_BLOCK = 512
_ABOVE_ONE = math.nextafter(1.0, 2.0)


def floor_for_arl(arl: float) -> float:
    """The calibrated ``floor`` (robust standard deviations) for a target ``arl``, from :data:`CALIBRATION`."""
    xs = [math.log(a) for a, _ in CALIBRATION]
    ys = [y for _, y in CALIBRATION]
    la = math.log(arl)
    k = 1 if la <= xs[1] else len(xs) - 1 if la >= xs[-2] else next(i for i in range(1, len(xs)) if la <= xs[i])
    return max(0.0, ys[k - 1] + (ys[k] - ys[k - 1]) * (la - xs[k - 1]) / (xs[k] - xs[k - 1]))


def _middle(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """The median along the last axis of an odd number of values: one element, the same on every path."""
    k = a.shape[-1] // 2
    out: NDArray[np.float64] = np.partition(a, k, axis=-1)[..., k]
    return out


def _ratio(r: NDArray[np.float64], d: NDArray[np.float64]) -> NDArray[np.float64]:
    """``r / d``, with ``0 / 0 = 0`` and ``r / 0 = inf`` for ``r > 0``."""
    safe = np.where(d > 0, d, 1.0)
    out: NDArray[np.float64] = np.where(d > 0, r / safe, np.where(r > 0, np.inf, 0.0))
    return out


class RobustShift(ChangeDetector):
    """Spikes and level shifts: the largest deviation from the recent median in ``arl`` observations.

    Guarantee: on an in-control stream of i.i.d. normal observations (any mean and variance), the average
    run length to the first false alarm from a fresh start is ``arl`` (by the simulation behind
    :data:`CALIBRATION`); later false alarms are rarer, since the record of residuals is kept. On any
    i.i.d. continuous stream, once ``arl`` residuals are recorded, the false alarm rate is at most about
    ``1 / (arl + 1)`` per observation, whatever the law. ``statistic`` is the residual over the larger of
    the record and the floor; the detector alarms when it exceeds 1.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> xs = np.concatenate([rng.normal(10, 1, 400), rng.normal(16, 1, 200)])
    >>> [int(i) for i in RobustShift().update_many(xs)]
    [400]
    """

    name = "robust_shift"
    kind = "real"

    def __init__(self, arl: float = 10_000.0, reference: int = 101, warmup: int = 100,
                 floor: float | None = None) -> None:
        self._arl = check_positive("arl", arl)
        if not self._arl >= 10:
            raise ValueError(f"arl must be >= 10 observations, got {arl!r}")
        if int(reference) != reference or reference < 5 or reference % 2 == 0:
            raise ValueError(f"reference must be an odd integer >= 5, got {reference!r}")
        self.reference = int(reference)
        if int(warmup) != warmup or warmup < 1:
            raise ValueError(f"warmup must be an integer >= 1, got {warmup!r}")
        self.warmup = int(warmup)
        self._given_floor = None if floor is None else check_positive("floor", floor, allow_zero=True)
        self._floor = floor_for_arl(self._arl) if self._given_floor is None else self._given_floor
        self._memory = int(math.ceil(self._arl))
        self.reset()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"arl": 300.0, "reference": 11, "warmup": 20}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"arl": 5.0}, "arl"), ({"arl": float("inf")}, "arl"), ({"reference": 4}, "reference"),
                ({"reference": 10}, "reference"), ({"warmup": 0}, "warmup"), ({"floor": -1.0}, "floor")]

    # --- contract -----------------------------------------------------------------------------------------

    @property
    def arl(self) -> float:
        return self._arl

    @property
    def floor(self) -> float:
        """Robust standard deviations of the reference below which a residual never alarms."""
        return self._floor

    @property
    def statistic(self) -> float:
        return self._stat

    @property
    def threshold(self) -> float:
        return _ABOVE_ONE

    def reset(self) -> None:
        self._n = 0
        self._alarm = False
        self._stat = 0.0
        self._i = 0  # observations since the reset (the record's clock; it runs on across restarts)
        self._m = 0  # residuals recorded since the reset
        self._ref: list[float] = []
        self._rec_i: list[int] = []  # the record: a queue of (index, residual), residuals decreasing
        self._rec_r: list[float] = []

    def _restart(self) -> None:
        self._alarm = False
        self._n = 0
        self._ref = []

    def update(self, x: float) -> bool:
        if self._alarm:
            self._restart()
        x = float(x)
        i = self._i
        self._i += 1
        self._n += 1
        if len(self._ref) < self.reference:
            self._ref.append(x)
            self._stat = 0.0
            return False
        w = np.asarray(self._ref)
        med = float(_middle(w))
        s = _MAD_TO_SD * float(_middle(np.abs(w - med)))
        r = abs(x - med)
        while self._rec_i and self._rec_i[0] <= i - self._memory:
            del self._rec_i[0], self._rec_r[0]
        record = self._rec_r[0] if self._rec_r else 0.0
        stat = float(_ratio(np.array(r), np.array(max(record, self._floor * s))))
        while self._rec_r and self._rec_r[-1] <= r:
            self._rec_i.pop()
            self._rec_r.pop()
        self._rec_i.append(i)
        self._rec_r.append(r)
        armed = self._m >= self.warmup
        self._m += 1
        self._stat = stat if armed else 0.0
        self._alarm = armed and stat >= _ABOVE_ONE
        if not self._alarm:
            self._ref.append(x)
            del self._ref[0]
        return self._alarm

    def update_many(self, xs: ArrayLike) -> NDArray[np.intp]:
        arr = np.asarray(xs, dtype=np.float64).ravel()
        alarms: list[int] = []
        k = self.reference
        pos = 0
        while pos < arr.size:
            if self._alarm:
                self._restart()
            if len(self._ref) < k:  # refilling the reference: no residual, no alarm
                take = min(k - len(self._ref), arr.size - pos)
                self._ref.extend(float(v) for v in arr[pos:pos + take])
                self._i += take
                self._n += take
                self._stat = 0.0
                pos += take
                continue
            c = min(_BLOCK, arr.size - pos, self._memory)
            x = arr[pos:pos + c]
            seq = np.concatenate([np.asarray(self._ref), x])
            windows = sliding_window_view(seq[:-1], k)  # windows[j] is the reference of x[j]
            med = _middle(windows)
            s = _MAD_TO_SD * _middle(np.abs(windows - med[:, None]))
            r = np.abs(x - med)
            idx = self._i + np.arange(c)
            rec_i = np.asarray(self._rec_i, dtype=np.int64)
            rec_r = np.asarray(self._rec_r, dtype=np.float64)
            # the record before each observation: the oldest unexpired queue entry, and the block's own past
            if rec_i.size:
                p = np.searchsorted(rec_i, idx - self._memory, side="right")
                old = np.where(p < rec_i.size, rec_r[np.minimum(p, rec_i.size - 1)], 0.0)
            else:
                old = np.zeros(c)
            prev = np.concatenate([[0.0], np.maximum.accumulate(r)[:-1]])
            stat = _ratio(r, np.maximum(np.maximum(old, prev), self._floor * s))
            armed = self._m + np.arange(c) >= self.warmup
            hits = np.flatnonzero(armed & (stat >= _ABOVE_ONE))
            upto = int(hits[0]) + 1 if hits.size else c
            alarm = bool(hits.size)
            last = int(idx[upto - 1])
            # the queue after pushing r[:upto]: old entries above every new residual, then the new "leaders"
            new_r = r[:upto]
            later = np.concatenate([np.maximum.accumulate(new_r[::-1])[::-1][1:], [-np.inf]])
            lead = np.flatnonzero(new_r > later)
            top = float(new_r.max())
            expired = last - self._memory
            keep = [(int(a), float(b)) for a, b in zip(rec_i, rec_r, strict=True) if b > top and a > expired]
            self._rec_i = [a for a, _ in keep] + [int(v) for v in idx[lead]]
            self._rec_r = [b for _, b in keep] + [float(v) for v in new_r[lead]]
            kept = x[:upto - 1] if alarm else x[:upto]
            self._ref = [float(v) for v in np.concatenate([np.asarray(self._ref), kept])[-k:]]
            self._stat = float(stat[upto - 1]) if bool(armed[upto - 1]) else 0.0
            self._m += upto
            self._i += upto
            self._n += upto
            self._alarm = alarm
            if alarm:
                alarms.append(pos + upto - 1)
            pos += upto
        return np.asarray(alarms, dtype=np.intp)

    # --- checkpoints --------------------------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        return {"arl": self._arl, "reference": self.reference, "warmup": self.warmup, "floor": self._given_floor}

    def _vars(self) -> dict[str, Any]:
        return {"n": self._n, "alarm": self._alarm, "statistic": self._stat, "i": self._i, "m": self._m,
                "reference": list(self._ref), "record_index": list(self._rec_i), "record": list(self._rec_r)}

    def _load(self, state: dict[str, Any]) -> None:
        self._n = int(state["n"])
        self._alarm = bool(state["alarm"])
        self._stat = float(state["statistic"])
        self._i = int(state["i"])
        self._m = int(state["m"])
        self._ref = [float(v) for v in state["reference"]]
        self._rec_i = [int(v) for v in state["record_index"]]
        self._rec_r = [float(v) for v in state["record"]]
