"""Anytime-valid two-sample tests of a continuous or ordinal value (latency, tokens, cost; CSAT, eval scores).

Observations are grouped into label-only blocks (:mod:`detectors.blocks`). When a block opens, the
detector fixes thresholds: quantiles (by default the median and the 90th percentile when larger values are
harmful, the median and the 10th when smaller ones are) of the *baseline's* history up to that moment. Each
observation of the block then gives one indicator per threshold, ``x > q`` (or ``x < q``; strict, so ties
never count), and each indicator makes a 2x2 table at the block's close. The thresholds are fixed before
the block's outcomes are seen, so within a block where canary and baseline values are exchangeable (the
null), every indicator table is exactly hypergeometric given its margins, and the mixture SPRT of
:mod:`detectors.mixture_fisher` applies to each.

The quantile tests share ``alpha``: the statistic is the average of their mixture likelihood ratios (every
one a martingale over the same blocks), which alarms whenever a Bonferroni split of ``alpha`` would, and
sometimes sooner. By Ville's inequality it ever reaches ``log(1/alpha)`` with probability at most ``alpha``.

The baseline history is a histogram: exact values for ordinal scores, and for real values the log-spaced bins
of :class:`LogBins`, of a fixed relative width (as DDSketch's), one set for each sign, from 1e-6 to 1e12 in
magnitude (smaller magnitudes share the bin of zero, larger ones the end bins). Its size is bounded by the
number of bins whatever the length of the watch, and a threshold is a bin, so comparisons are made on bins;
any threshold computed from the past is valid, the resolution only affects power.

The pieces are public so that vigil's controller runs the same test on its bucket summaries (whose value
histograms are :class:`LogBins` bins, 5% wide): :class:`LogBins` (the one binning of real values),
:func:`default_quantiles`, :func:`quantile_keys` (a history's quantile bins) and :func:`exceedances` (the
values of a histogram beyond a threshold bin).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from detectors.blocks import (
    BlockedTwoSampleTest,
    Blocks,
    Direction,
    Floats,
    Ints,
    State,
    block_sums,
    check_direction,
    fisher_increments,
)
from detectors.mixture_fisher import default_log_psi

__all__ = ["LogBins", "OrdinalExceedanceTest", "QuantileExceedanceTest", "beyond", "default_quantiles",
           "exceedances", "quantile_keys"]

_ZERO = 1e-6  # magnitudes up to it share the bin of zero
_HUGE = 1e12  # magnitudes above it share the end bins


class LogBins:
    """Log-spaced bins of real values, of relative width ``relative_accuracy`` (as DDSketch's).

    Bin 0 holds the magnitudes up to 1e-6; bin ``k >= 1`` the values in ``[1e-6 g**(k-1), 1e-6 g**k)``
    with ``g = (1 + a) / (1 - a)``, and bin ``-k`` their negatives; magnitudes beyond 1e12 share the end
    bins. The bins are monotone in the value, so a threshold on bins is a threshold on values.
    :meth:`key` bins one value, :meth:`keys` an array; they give the same bins.

    >>> bins = LogBins(1 / 41)  # bins 5% wide (g = 1.05), as vigil's bucket summaries
    >>> bins.key(0.0), bins.key(1.0) < bins.key(1.06), bins.key(-2.0) < bins.key(-1.0) < bins.key(0.0)
    (0, True, True)
    >>> bins.keys(np.array([-2.0, 0.0, 1.0, 1.06])).tolist() == [bins.key(x) for x in (-2.0, 0.0, 1.0, 1.06)]
    True
    """

    def __init__(self, relative_accuracy: float) -> None:
        a = float(relative_accuracy)
        if not 0.0 < a < 0.5:
            raise ValueError(f"relative_accuracy must be in (0, 0.5), got {relative_accuracy!r}")
        self.relative_accuracy = a
        self._step = math.log((1.0 + a) / (1.0 - a))
        self._log_zero = math.log(_ZERO)
        self.top = 1 + int((math.log(_HUGE) - self._log_zero) / self._step)
        """The end bin of the positive values (``-top`` of the negative ones)."""

    def key(self, x: float) -> int:
        """The bin of one value."""
        if x > _ZERO:
            return min(1 + int((math.log(x) - self._log_zero) / self._step), self.top)
        if x < -_ZERO:
            return -min(1 + int((math.log(-x) - self._log_zero) / self._step), self.top)
        return 0

    def keys(self, x: Floats) -> Ints:
        """The bins of an array of values."""
        a = np.abs(x)
        k = np.minimum(1.0 + np.floor((np.log(np.maximum(a, _ZERO)) - self._log_zero) / self._step), self.top)
        return np.where(a > _ZERO, np.sign(x) * k, 0.0).astype(np.int64)

    def value(self, key: int) -> float:
        """A representative value of a bin (its geometric middle)."""
        if key == 0:
            return 0.0
        mag = math.exp(self._log_zero + (abs(key) - 0.5) * self._step)
        return mag if key > 0 else -mag

    def edge(self, key: int) -> float:
        """The upper edge of a bin: the values of the bins above it are at least this."""
        if key == 0:
            return _ZERO
        mag = math.exp(self._log_zero + (abs(key) - (0 if key > 0 else 1)) * self._step)
        return mag if key > 0 else -mag


def default_quantiles(direction: Direction) -> list[float]:
    """The baseline quantiles tested by default: the median and the harmful tail (p90, or p10)."""
    return [0.5, 0.9] if direction == "increase" else [0.5, 0.1]


def quantile_keys(keys: Ints, hist: Floats | Ints, quantiles: Sequence[float]) -> Ints:
    """Lower quantiles ``(..., len(quantiles))``, as bins, of histograms ``(..., W)`` over sorted ``keys``.

    The ``p`` quantile is the first bin where the cumulative count reaches ``max(ceil(p * total), 1)``.

    >>> quantile_keys(np.array([1, 2, 3]), np.array([5.0, 4.0, 1.0]), [0.5, 0.9]).tolist()
    [1, 2]
    """
    cdf = np.cumsum(hist, axis=-1)
    total = cdf[..., -1]
    out = np.empty((*hist.shape[:-1], len(quantiles)), np.int64)
    for j, p in enumerate(quantiles):
        target = np.maximum(np.ceil(p * total - 1e-9), 1.0)
        out[..., j] = keys[np.argmax(cdf >= target[..., None], axis=-1)]
    return out


def beyond(keys: Ints, thresholds: Ints, direction: Direction) -> NDArray[np.bool_]:
    """Whether bins lie beyond threshold bins in the harmful direction (strictly: ties never count)."""
    out: NDArray[np.bool_] = keys > thresholds if direction == "increase" else keys < thresholds
    return out


def exceedances(keys: Ints, counts: Ints, thresholds: Ints, direction: Direction) -> Ints:
    """Per threshold bin, the count of a histogram (``counts`` over ``keys``) beyond it.

    >>> exceedances(np.array([1, 2, 3]), np.array([5, 4, 1]), np.array([1, 2]), "increase").tolist()
    [5, 1]
    """
    out: Ints = (counts[None, :] * beyond(keys[None, :], thresholds[:, None], direction)).sum(axis=1)
    return out


def _check_quantiles(quantiles: Sequence[float] | None, direction: Direction) -> list[float]:
    if quantiles is None:
        return default_quantiles(direction)
    try:
        qs = [float(q) for q in quantiles]
    except (TypeError, ValueError):
        raise ValueError(f"quantiles must be a sequence of numbers in (0, 1), got {quantiles!r}") from None
    if not 1 <= len(qs) <= 8 or len(set(qs)) != len(qs) or not all(0.0 < q < 1.0 for q in qs):
        raise ValueError(f"quantiles must be 1 to 8 distinct numbers in (0, 1), got {quantiles!r}")
    return qs


def _check_count(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class QuantileExceedanceTest(BlockedTwoSampleTest):
    """Anytime-valid test that canary values exceed the baseline's quantiles more often than baseline values.

    For each quantile ``p`` of the baseline's history before the current block, the share of canary values
    beyond it is compared with the share of baseline values beyond it, by a mixture Fisher SPRT on the
    block's 2x2 tables (odds ratios 1.1x to 10x). Under the null (within a block, canary and baseline values
    exchangeable) the probability that the test ever alarms is at most ``alpha``, all quantiles together,
    over an unbounded watch, whatever the values' law and the canary share do over time. The alarm is
    sticky until :meth:`reset`.

    Parameters
    ----------
    alpha:
        False-alarm probability over an unbounded watch, in (0, 1).
    direction:
        ``"increase"`` when larger values are harmful (latency, cost): indicators ``x > q``;
        ``"decrease"`` when smaller ones are (scores): indicators ``x < q``.
    quantiles:
        Baseline quantiles to compare at; by default ``[0.5, 0.9]`` for increase, ``[0.5, 0.1]`` for decrease.
    block:
        Observations of the rarer arm per block (>= 1).
    min_history:
        Baseline observations the history must hold before its quantiles are used (>= 1); blocks that
        close earlier add to the history but are not tested.
    relative_accuracy:
        Relative width of the history's bins, in (0, 0.5).

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> canary = rng.random(10_000) < 0.10
    >>> latency = rng.lognormal(0.0, 0.6, 10_000) * np.where(canary, 1.5, 1.0)   # canary 1.5x slower
    >>> test = QuantileExceedanceTest(alpha=0.01)
    >>> test.update_many(latency, canary), test.p_value < 0.01
    (True, True)
    >>> QuantileExceedanceTest(alpha=0.01).update_many(rng.lognormal(0.0, 0.6, 10_000), canary)
    False
    """

    name = "quantile_exceedance"
    kind = "real"
    _chunk = 1024
    _rows = 64
    _cells = 1 << 22  # bound on (streams x blocks x bins) of one step's cumulative histograms
    _shared: ClassVar[frozenset[str]] = frozenset({"keys"})

    def __init__(self, alpha: float = 0.01, direction: Direction = "increase",
                 quantiles: Sequence[float] | None = None, block: int = 5, min_history: int = 50,
                 relative_accuracy: float = 0.01) -> None:
        super().__init__(alpha, block)
        self._direction = check_direction(direction)
        self._quantiles = _check_quantiles(quantiles, self._direction)
        self._min_history = _check_count("min_history", min_history, 1)
        self._bins = LogBins(relative_accuracy)
        self._accuracy = self._bins.relative_accuracy
        self._grid = default_log_psi("increase")  # the indicators already point the harmful way
        self.reset()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"alpha": 0.05, "block": 2, "min_history": 10}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"alpha": 0.0}, "alpha"), ({"direction": "both"}, "direction"), ({"block": -1}, "block"),
                ({"quantiles": [0.5, 1.0]}, "quantiles"), ({"quantiles": []}, "quantiles"),
                ({"min_history": 0}, "min_history"), ({"relative_accuracy": 0.0}, "relative_accuracy")]

    def params(self) -> dict[str, Any]:
        return {"alpha": self._alpha, "direction": self._direction, "quantiles": list(self._quantiles),
                "block": self._block, "min_history": self._min_history, "relative_accuracy": self._accuracy}

    @property
    def direction(self) -> Direction:
        return self._direction

    @property
    def quantiles(self) -> list[float]:
        return list(self._quantiles)

    @property
    def thresholds(self) -> list[float] | None:
        """The open block's thresholds (upper edges of the quantiles' bins), or None while the history is short."""
        if not bool(self._st["active"][0]):
            return None
        return [self._edge(int(k)) for k in self._st["thr"][0]]

    @property
    def history_size(self) -> int:
        """Baseline observations in the history."""
        return int(self._st["hist"][0].sum())

    # -- binning -----------------------------------------------------------------------------------------
    def _keys(self, x: Floats) -> Ints:
        """Monotone integer bins (:class:`LogBins`)."""
        return self._bins.keys(x)

    def _edge(self, key: int) -> float:
        """The upper edge of a bin."""
        return self._bins.edge(key)

    def _check_values(self, x: Floats) -> None:
        if not np.all(np.isfinite(x)):
            raise ValueError("xs must be finite")

    # -- the engine --------------------------------------------------------------------------------------
    def _fresh(self, n_rows: int) -> State:
        m = len(self._quantiles)
        return {"pending": np.zeros((n_rows, 2, 1 + m)), "log_lr": np.zeros((n_rows, m * self._grid.size)),
                "keys": np.zeros(0, np.int64), "hist": np.zeros((n_rows, 0)),
                "thr": np.zeros((n_rows, m), np.int64), "active": np.zeros(n_rows, bool)}

    def _thresholds(self, keys: Ints, hist: Floats) -> tuple[Ints, NDArray[np.bool_]]:
        """Lower quantiles (bins) of histograms ``(..., W)`` over ``keys``, and whether each is long enough."""
        return quantile_keys(keys, hist, self._quantiles), hist.sum(axis=-1) >= self._min_history

    def _increments(self, st: State, x: Floats, lab: NDArray[np.bool_],
                    blocks: Blocks) -> tuple[Floats, Floats, Ints, Floats]:
        n_rows = x.shape[0]
        r = blocks.width
        rows = np.arange(n_rows)
        kx = self._keys(x)
        keys = np.union1d(st["keys"], kx.ravel())
        w = keys.size
        rank = np.searchsorted(keys, kx)
        at = np.searchsorted(keys, st["keys"])
        thr = np.empty((n_rows, r, len(self._quantiles)), np.int64)
        active = np.empty((n_rows, r), bool)
        thr[:, 0], active[:, 0] = st["thr"], st["active"]
        final = np.zeros((n_rows, w))
        step = max(1, self._cells // (r * w))  # rows at a time, so that (rows, blocks, bins) arrays stay small
        for i in range(0, n_rows, step):
            j = min(n_rows, i + step)
            hist0 = np.zeros((j - i, w))
            hist0[:, at] = st["hist"][i:j]
            base = ~lab[i:j]
            idx = ((rows[:j - i, None] * r + blocks.rel[i:j]) * w + rank[i:j])[base]
            # after[:, b]: the history once slot b is over (the baseline values it held included)
            after = hist0[:, None, :] + np.cumsum(np.bincount(idx, minlength=(j - i) * r * w).reshape(j - i, r, w),
                                                  axis=1)
            if r > 1:
                thr[i:j, 1:], active[i:j, 1:] = self._thresholds(keys, after[:, :-1])
            final[i:j] = after[:, -1]
        q = thr[rows[:, None], blocks.rel]  # (S, n, m): each observation's thresholds
        ind = beyond(kx[:, :, None], q, self._direction)
        feats = np.concatenate([np.ones((*x.shape, 1)), ind.astype(np.float64)], axis=2)
        sums, st["pending"] = block_sums(blocks, lab, feats, st["pending"])
        where, inc = fisher_increments(sums, blocks.closed & active, self._grid)
        st["thr"], st["active"] = thr[rows, blocks.n_closed], active[rows, blocks.n_closed]
        keep = np.any(final > 0, axis=0)
        st["keys"], st["hist"] = keys[keep], final[:, keep]
        m, g = len(self._quantiles), self._grid.size
        return st["log_lr"].reshape(n_rows, m, g), np.full((n_rows, m), -math.log(m)), where, inc

    # -- checkpoints -------------------------------------------------------------------------------------
    def _vars(self) -> dict[str, Any]:
        out = self._common_vars()
        st = self._st
        out.update({"keys": st["keys"].tolist(), "hist": [int(c) for c in st["hist"][0]],
                    "thresholds": st["thr"][0].tolist(), "active": bool(st["active"][0])})
        return out

    def _load(self, state: dict[str, Any]) -> None:
        self._load_common(state)
        st = self._st
        st["keys"] = np.asarray(state["keys"], dtype=np.int64).reshape(-1)
        st["hist"] = np.asarray(state["hist"], dtype=np.float64).reshape(1, -1)
        st["thr"] = np.asarray(state["thresholds"], dtype=np.int64).reshape(1, -1)
        st["active"] = np.array([bool(state["active"])])


class OrdinalExceedanceTest(QuantileExceedanceTest):
    """Anytime-valid test of an ordinal score (CSAT 1-5, an eval's grade), canary against baseline.

    The quantile-exceedance test of :class:`QuantileExceedanceTest` on integer scores, with an exact
    histogram (one bin per score) as the baseline's history; comparisons are strict, so a canary score
    equal to the baseline's median never counts as beyond it. Under the null (within a block, canary and
    baseline scores exchangeable) the probability that it ever alarms is at most ``alpha``, over an
    unbounded watch. By default ``direction="decrease"``: lower scores are harmful.

    >>> import numpy as np
    >>> rng = np.random.default_rng(4)
    >>> canary = rng.random(20_000) < 0.10
    >>> csat = rng.choice([1, 2, 3, 4, 5], 20_000, p=[0.05, 0.07, 0.13, 0.30, 0.45])
    >>> worse = np.maximum(csat - (rng.random(20_000) < 0.3), 1)  # the canary loses a point 30% of the time
    >>> test = OrdinalExceedanceTest(alpha=0.01)
    >>> test.update_many(np.where(canary, worse, csat), canary), test.p_value < 0.01
    (True, True)
    >>> OrdinalExceedanceTest(alpha=0.01).update_many(csat, canary)
    False
    """

    name = "ordinal_exceedance"
    kind = "ordinal"

    def __init__(self, alpha: float = 0.01, direction: Direction = "decrease",
                 quantiles: Sequence[float] | None = None, block: int = 5, min_history: int = 50) -> None:
        super().__init__(alpha, direction, quantiles, block, min_history)

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"alpha": 2.0}, "alpha"), ({"direction": "lower"}, "direction"), ({"block": 0}, "block"),
                ({"quantiles": [0.0]}, "quantiles"), ({"min_history": -3}, "min_history")]

    def params(self) -> dict[str, Any]:
        p = super().params()
        del p["relative_accuracy"]
        return p

    def _keys(self, x: Floats) -> Ints:
        return x.astype(np.int64)

    def _edge(self, key: int) -> float:
        return float(key)

    def _check_values(self, x: Floats) -> None:
        if not np.all(np.isfinite(x) & (x == np.floor(x)) & (np.abs(x) < 2.0**53)):
            raise ValueError("xs must be integer scores")
