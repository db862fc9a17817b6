"""Canary analysis: every closed bucket becomes stratified 2x2 tables, one per test and channel.

Rate metrics compare harmful outcomes per trial. Value metrics compare the share of values beyond the
stable version's running quantiles (p50 and the harmful tail, p90 or p10), thresholds that are fixed
from earlier buckets before a bucket is seen, so every test stays an exact conditional test. Tests
share the rollout's false-alarm budget through :class:`detectors.AlphaBudget`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.aggregate import Bucket
from controller.config import Analysis
from controller.decisions import Evidence
from controller.metrics import CATALOG, spec_for
from detectors import AlphaBudget, MixtureFisherTest, fisher_log_lr

__all__ = ["CanaryAnalysis", "TestResult"]

DETECTOR = "mixture-fisher"
_QUANTILES = {"increase": (0.5, 0.9), "decrease": (0.5, 0.1)}


@dataclass(frozen=True)
class TestResult:
    """A test that has reached its threshold."""

    name: str
    metric: str
    critical: bool
    enough_samples: bool


def _test_names(metric: str, kind: str, direction: str) -> list[str]:
    if kind == "rate":
        return [metric]
    sign = ">" if direction == "increase" else "<"
    return [f"{metric}{sign}p{int(q * 100)}" for q in _QUANTILES[direction]]


def _quantile_bin(hist: dict[int, int], q: float) -> int:
    bins = sorted(hist)
    counts = np.fromiter((hist[b] for b in bins), dtype=np.int64, count=len(bins))
    cum = np.cumsum(counts)
    return bins[int(np.searchsorted(cum, q * cum[-1]))]


def _beyond(hist: dict[int, int], edge: int, up: bool) -> int:
    """Observations in bins beyond ``edge`` in the harmful direction."""
    return sum(v for b, v in hist.items() if (b > edge if up else b < edge))


class CanaryAnalysis:
    """The tests of one rollout (one stable version against one canary version)."""

    def __init__(self, stable: str, canary: str, settings: Analysis) -> None:
        self.stable = stable
        self.canary = canary
        self.settings = settings
        overrides = {m.name: m for m in settings.metrics}
        self._directions: dict[str, str] = {}
        self._critical: dict[str, bool] = {}
        self._min_samples: dict[str, int] = {}
        for name, o in overrides.items():
            spec = spec_for(name)
            assert spec is not None  # the config parser refuses unknown metrics
            self._directions[name] = o.direction or spec.direction
            self._critical[name] = o.critical
            self._min_samples[name] = o.min_samples or settings.min_samples
        metrics = list(overrides) if overrides else list(CATALOG)
        known = [t for m in metrics for t in _test_names(m, spec_for(m).kind, self._direction(m))]  # type: ignore[union-attr]
        # with explicit metrics there is nothing to discover, so the whole budget goes to them
        self.budget = AlphaBudget(settings.alpha, known=known, reserve=0.0 if overrides else 0.2)
        self.only = set(overrides) if overrides else None
        self.tests: dict[str, MixtureFisherTest] = {}
        self.metric_of: dict[str, str] = {}
        self.baseline: dict[str, dict[int, int]] = {}  # value metric -> stable histogram so far
        self.baseline_n: dict[str, int] = {}
        self.thresholds: dict[str, dict[float, int]] = {}
        self.threshold_at: dict[str, int] = {}  # baseline size when the thresholds were last set
        self.sums: dict[str, list[float]] = {}  # test -> [canary trials, harm, stable trials, harm]
        self.examples: dict[str, deque[str]] = {}
        self.window: deque[tuple[int, dict[str, tuple[int, int, int, int]]]] = deque()
        self.buckets_seen = 0

    def _direction(self, metric: str) -> str:
        if metric in self._directions:
            return self._directions[metric]
        spec = spec_for(metric)
        return spec.direction if spec else "increase"

    def _test(self, name: str, metric: str) -> MixtureFisherTest:
        t = self.tests.get(name)
        if t is None:
            t = self.tests[name] = MixtureFisherTest(alpha=self.budget.level(name), direction="increase")
            self.metric_of[name] = metric
        return t

    def _thresholds(self) -> dict[str, dict[float, int]]:
        """Quantile bins of the stable history, refreshed when it has grown by a tenth (they are set from
        earlier buckets only, so they stay fixed in advance of the data they judge)."""
        for m, h in self.baseline.items():
            n = self.baseline_n.get(m, 0)
            if n < self.settings.baseline_min_samples:
                continue
            if m not in self.threshold_at or n >= 1.1 * self.threshold_at[m]:
                self.thresholds[m] = {q: _quantile_bin(h, q) for q in _QUANTILES[self._direction(m)]}
                self.threshold_at[m] = n
        return self.thresholds

    def tables(self, buckets: list[Bucket]) -> tuple[list[str], list[tuple[int, int, int, int]]]:
        """Per test and channel, ``(n_canary, harm_canary, n_stable, harm_stable)`` of one bucket."""
        by_channel: dict[str, dict[str, Bucket]] = {}
        for b in buckets:
            if b.version == self.canary:
                by_channel.setdefault(b.channel, {})["c"] = b
            elif b.version == self.stable:
                by_channel.setdefault(b.channel, {})["s"] = b
        names: list[str] = []
        rows: list[tuple[int, int, int, int]] = []
        thresholds = self._thresholds()
        for pair in by_channel.values():
            c, s = pair.get("c"), pair.get("s")
            if c is None or s is None:
                continue  # a stratum with one side carries no evidence
            for m, (nc, kc) in c.rates.items():
                r = s.rates.get(m)
                if r is None or (self.only is not None and m not in self.only) or spec_for(m) is None:
                    continue
                ns, ks = r
                if self._direction(m) == "decrease":
                    kc, ks = nc - kc, ns - ks
                names.append(m)
                rows.append((nc, kc, ns, ks))
            for m, qs in thresholds.items():
                hc, hs = c.values.get(m), s.values.get(m)
                if not hc or not hs or (self.only is not None and m not in self.only):
                    continue
                up = self._direction(m) == "increase"
                for q, edge in qs.items():
                    names.append(f"{m}{'>' if up else '<'}p{int(q * 100)}")
                    rows.append((sum(hc.values()), _beyond(hc, edge, up), sum(hs.values()), _beyond(hs, edge, up)))
        return names, rows

    def observe(self, start: int, buckets: list[Bucket]) -> list[TestResult]:
        """Feed one closed bucket; return the tests in alarm (new or standing)."""
        names, rows = self.tables(buckets)
        self.buckets_seen += 1
        per_test: dict[str, tuple[np.ndarray, list[int]]] = {}
        if rows:
            arr = np.asarray(rows, dtype=np.float64)
            grid = next(iter(self.tests.values())).log_psi if self.tests else MixtureFisherTest().log_psi
            inc = fisher_log_lr(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], grid)
            for i, name in enumerate(names):
                acc = per_test.get(name)
                if acc is None:
                    per_test[name] = (inc[i].copy(), list(rows[i]))
                else:
                    acc[0][:] += inc[i]
                    for j in range(4):
                        acc[1][j] += rows[i][j]
        seen: dict[str, tuple[int, int, int, int]] = {}
        for name, (lr, counts) in per_test.items():
            metric = name.split(">")[0].split("<")[0]
            self._test(name, metric).add(lr, *counts)
            s = self.sums.setdefault(name, [0, 0, 0, 0])
            for j in range(4):
                s[j] += counts[j]
            seen[name] = tuple(counts)  # type: ignore[assignment]
        self.window.append((start, seen))
        while self.window and self.window[0][0] <= start - self.settings.window:
            self.window.popleft()
        for b in buckets:
            if b.version == self.canary:
                for m, ids in b.examples.items():
                    self.examples.setdefault(m, deque(maxlen=10)).extend(ids)
            elif b.version == self.stable:
                for m, hist in b.values.items():
                    mine = self.baseline.setdefault(m, {})
                    for k, v in hist.items():
                        mine[k] = mine.get(k, 0) + v
                    self.baseline_n[m] = self.baseline_n.get(m, 0) + sum(hist.values())
        return [
            TestResult(name, self.metric_of[name], self._critical.get(self.metric_of[name], True),
                       t.counts[0] >= self._min_samples.get(self.metric_of[name], self.settings.min_samples))
            for name, t in self.tests.items() if t.alarm
        ]

    def evidence(self, names: list[str] | None = None, top: int = 5) -> list[Evidence]:
        """Evidence of the named tests, or of the ``top`` closest to their thresholds."""
        chosen = names if names is not None else sorted(
            self.tests, key=lambda n: self.tests[n].statistic - self.tests[n].threshold, reverse=True)[:top]
        out = []
        for name in chosen:
            t = self.tests[name]
            nc, kc, ns, ks = t.counts
            if name == self.metric_of[name] and self._direction(name) == "decrease":
                kc, ks = nc - kc, ns - ks  # the test counts misses; the evidence shows the rate itself
            out.append(Evidence(
                metric=name, detector=DETECTOR, statistic=round(t.statistic, 4), threshold=round(t.threshold, 4),
                p_value=float(f"{t.p_value:.4g}"), n_canary=nc, n_stable=ns,
                canary_value=round(kc / nc, 6) if nc else None, stable_value=round(ks / ns, 6) if ns else None))
        return out

    def example_ids(self, names: list[str]) -> list[str]:
        ids: list[str] = []
        for name in names:
            for i in self.examples.get(self.metric_of.get(name, name), ()):
                if i not in ids:
                    ids.append(i)
        return ids[-10:]

    def window_view(self) -> dict[str, tuple[int, int, int, int]]:
        """Per test, counts over the sliding window (what each detector has seen lately)."""
        out: dict[str, list[int]] = {}
        for _, seen in self.window:
            for name, counts in seen.items():
                acc = out.setdefault(name, [0, 0, 0, 0])
                for j in range(4):
                    acc[j] += counts[j]
        return {k: tuple(v) for k, v in out.items()}  # type: ignore[misc]

    def to_state(self) -> dict[str, Any]:
        return {
            "stable": self.stable, "canary": self.canary, "budget": self.budget.to_state(),
            "tests": {n: t.to_state() for n, t in self.tests.items()}, "metric_of": self.metric_of,
            "baseline": {m: {str(k): v for k, v in h.items()} for m, h in self.baseline.items()},
            "thresholds": {m: {str(q): b for q, b in t.items()} for m, t in self.thresholds.items()},
            "threshold_at": self.threshold_at,
            "sums": self.sums, "examples": {m: list(d) for m, d in self.examples.items()},
            "window": [[s, {k: list(v) for k, v in seen.items()}] for s, seen in self.window],
            "buckets_seen": self.buckets_seen,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.budget = AlphaBudget.from_state(state["budget"])
        self.tests = {n: MixtureFisherTest.from_state(s) for n, s in state["tests"].items()}
        self.metric_of = dict(state["metric_of"])
        self.baseline = {m: {int(k): int(v) for k, v in h.items()} for m, h in state["baseline"].items()}
        self.baseline_n = {m: sum(h.values()) for m, h in self.baseline.items()}
        self.thresholds = {m: {float(q): int(b) for q, b in t.items()} for m, t in state["thresholds"].items()}
        self.threshold_at = {m: int(n) for m, n in state["threshold_at"].items()}
        self.sums = {k: list(v) for k, v in state["sums"].items()}
        self.examples = {m: deque(ids, maxlen=10) for m, ids in state["examples"].items()}
        self.window = deque((int(s), {k: tuple(v) for k, v in seen.items()}) for s, seen in state["window"])
        self.buckets_seen = int(state["buckets_seen"])
