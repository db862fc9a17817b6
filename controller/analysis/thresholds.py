"""Thresholds of the value metrics: running quantiles of the stable version's history.

A value metric (latency, tokens, scores) is tested on the share of values beyond the stable version's
quantiles: the median and the harmful tail (p90 when larger values are harmful, p10 when smaller ones are).
The thresholds are set from earlier buckets only, before a bucket is seen, so that every test stays an
exact conditional test; they are refreshed when the history has grown by a tenth.

The quantiles, the bins and the counts beyond them are the quantile-exceedance test's
(:mod:`detectors.exceedance`: :func:`~detectors.exceedance.quantile_keys`,
:func:`~detectors.exceedance.exceedances`, on the :class:`~detectors.exceedance.LogBins` of the summaries),
so that the analysis and :class:`detectors.QuantileExceedanceTest` judge the same tables on the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np

from detectors.exceedance import default_quantiles, exceedances, quantile_keys

__all__ = ["QUANTILES", "Thresholds", "test_names"]

#: The quantiles each value metric is tested at, by its harmful direction.
QUANTILES: dict[str, tuple[float, ...]] = {d: tuple(default_quantiles(d)) for d in ("increase", "decrease")}
# thresholds are set again once the history is this much larger than when they were last set
_REFRESH = 1.1


def _name(metric: str, q: float, up: bool) -> str:
    return f"{metric}{'>' if up else '<'}p{int(q * 100)}"


def test_names(metric: str, kind: str, direction: str) -> list[str]:
    """The pooled tests of a metric: the metric itself for a rate, one per quantile for a value."""
    if kind == "rate":
        return [metric]
    return [_name(metric, q, direction == "increase") for q in QUANTILES[direction]]


def _histogram(hist: dict[int, int]) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.int64]]]:
    """A histogram as arrays: its sorted bins, and their counts."""
    bins = np.fromiter(sorted(hist), dtype=np.int64, count=len(hist))
    return bins, np.fromiter((hist[b] for b in bins.tolist()), dtype=np.int64, count=len(hist))


class Thresholds:
    """The stable version's histogram of each value metric, and the quantile bins set from it.

    ``direction`` gives a metric's harmful direction; ``min_samples`` the stable values a metric's history
    must hold before its thresholds are set (``spec.analysis.baselineMinSamples``).
    """

    def __init__(self, min_samples: int, direction: Callable[[str], str]) -> None:
        self.min_samples = min_samples
        self.direction = direction
        self.baseline: dict[str, dict[int, int]] = {}  # value metric -> stable histogram so far
        self.baseline_n: dict[str, int] = {}
        self.bins: dict[str, dict[float, int]] = {}  # value metric -> quantile -> its bin
        self.set_at: dict[str, int] = {}  # baseline size when the thresholds were last set

    def current(self) -> dict[str, dict[float, int]]:
        """Quantile bins of the stable history, refreshed when it has grown by a tenth (they are set from
        earlier buckets only, so they stay fixed in advance of the data they judge)."""
        for m, h in self.baseline.items():
            n = self.baseline_n.get(m, 0)
            if n < self.min_samples:
                continue
            if m not in self.set_at or n >= _REFRESH * self.set_at[m]:
                qs = QUANTILES[self.direction(m)]
                bins, counts = _histogram(h)
                self.bins[m] = dict(zip(qs, quantile_keys(bins, counts, qs).tolist(), strict=True))
                self.set_at[m] = n
        return self.bins

    def exceedances(self, values: dict[str, dict[int, int]], thresholds: dict[str, dict[float, int]],
                    only: set[str] | None) -> Iterator[tuple[str, str, int, int]]:
        """Per quantile test of one bucket's histograms, ``(test, metric, n, beyond)``."""
        for m, qs in thresholds.items():
            hist = values.get(m)
            if not hist or (only is not None and m not in only):
                continue
            direction: Literal["increase", "decrease"] = "increase" if self.direction(m) == "increase" else "decrease"
            bins, counts = _histogram(hist)
            n = int(counts.sum())
            beyond = exceedances(bins, counts, np.fromiter(qs.values(), dtype=np.int64, count=len(qs)), direction)
            for q, k in zip(qs, beyond.tolist(), strict=True):
                yield _name(m, q, direction == "increase"), m, n, k

    def add(self, values: dict[str, dict[int, int]]) -> None:
        """Add a stable bucket's histograms to the history."""
        for m, hist in values.items():
            mine = self.baseline.setdefault(m, {})
            for k, cnt in hist.items():
                mine[k] = mine.get(k, 0) + cnt
            self.baseline_n[m] = self.baseline_n.get(m, 0) + sum(hist.values())

    def to_state(self) -> dict[str, Any]:
        return {"baseline": {m: {str(k): v for k, v in h.items()} for m, h in self.baseline.items()},
                "thresholds": {m: {str(q): b for q, b in t.items()} for m, t in self.bins.items()},
                "threshold_at": self.set_at}

    def load_state(self, state: dict[str, Any]) -> None:
        """What :meth:`to_state` gave (the analysis's checkpoint holds its keys among its own)."""
        self.baseline = {m: {int(k): int(v) for k, v in h.items()} for m, h in state["baseline"].items()}
        self.baseline_n = {m: sum(h.values()) for m, h in self.baseline.items()}
        self.bins = {m: {float(q): int(b) for q, b in t.items()} for m, t in state["thresholds"].items()}
        self.set_at = {m: int(n) for m, n in state["threshold_at"].items()}
