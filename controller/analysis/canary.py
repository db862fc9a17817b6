"""Canary analysis: every closed bucket becomes stratified 2x2 tables, one per test and channel.

Rate metrics compare harmful outcomes per trial. Value metrics compare the share of values beyond the
stable version's running quantiles (p50 and the harmful tail, p90 or p10), thresholds that are fixed
from earlier buckets before a bucket is seen, so every test stays an exact conditional test. Tests
share the rollout's false-alarm budget through :class:`detectors.AlphaBudget`.

With ``segments`` (``channel``, ``tenant``), every pooled test also gets one test per value of each
dimension, on that value's traffic only (``escalation_rate[tenant=acme]``, stratified by channel like the
pooled test), so that a harm confined to one channel or tenant is not diluted by the others. Only the
first ``max_segments`` values of a dimension are tested apart (the busiest first among those that appear
in the same bucket); later ones are pooled into one ``other`` segment. The budget is split by a union
bound over every test that can ever exist: the pooled tests share ``alpha * (1 - SEGMENT_SHARE)`` as
without segments, and the segment tests ``alpha * SEGMENT_SHARE`` through :class:`detectors.SegmentBudget`
(per pooled test and dimension a family; within it, a summable allocation over the at most
``max_segments + 1`` values in their order of discovery). So the probability of rolling back a healthy
canary stays at most ``alpha`` however many segment values appear, and when they appear.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple, get_args

import numpy as np

from controller.config import Analysis
from controller.contracts.decisions import Evidence
from controller.contracts.events import Channel
from controller.ingest.buckets import OTHER, Bucket
from controller.ingest.catalog import CATALOG, spec_for
from detectors import AlphaBudget, MixtureFisherTest, SegmentBudget, fisher_log_lr

__all__ = ["SEGMENT_SHARE", "CanaryAnalysis", "TestKey", "TestResult"]

DETECTOR = "mixture-fisher"
_QUANTILES = {"increase": (0.5, 0.9), "decrease": (0.5, 0.1)}
#: Share of ``alpha`` given to the segment tests when there are any; the pooled tests keep the rest.
SEGMENT_SHARE = 0.5
# the contract's channels other than "other": more can never be told apart, so the channel cap stops there
_CHANNELS_APART = len(get_args(Channel)) - 1


@dataclass(frozen=True)
class TestResult:
    """A test that has reached its threshold."""

    name: str
    metric: str
    critical: bool
    enough_samples: bool


class TestKey(NamedTuple):
    """What a row of :meth:`CanaryAnalysis.tables` feeds: a pooled test, or its restriction to one segment."""

    name: str  # ``base``, or ``base[dimension=value]``
    metric: str
    base: str  # the pooled test: ``escalation_rate``, ``latency_ms>p90``
    dimension: str | None = None
    value: str | None = None


Counts = dict[str, tuple[str, int, int]]  # pooled test -> (metric, n, harmful) of one bucket


def _suffix(dimension: str, value: str) -> str:
    return f"[{dimension}={value}]"


def _sum(parts: list[Counts]) -> Counts:
    if len(parts) == 1:
        return parts[0]
    out: Counts = {}
    for part in parts:
        for base, (m, n, k) in part.items():
            o = out.get(base)
            out[base] = (m, n, k) if o is None else (m, o[1] + n, o[2] + k)
    return out


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
        reserve = 0.0 if overrides else 0.2
        # values of a dimension tested apart, besides the pooled "other"
        self.caps: dict[str, int] = {d: min(settings.max_segments, _CHANNELS_APART) if d == "channel" else settings.max_segments
                     for d in settings.segments}
        share = SEGMENT_SHARE if self.caps else 0.0
        self.budget = AlphaBudget(settings.alpha * (1.0 - share), known=known, reserve=reserve)
        self.segment_budget = SegmentBudget(settings.alpha * share, known, {d: c + 1 for d, c in self.caps.items()},
                                            reserve=reserve) if self.caps else None
        self.segment_values: dict[str, list[str]] = {d: [] for d in self.caps}  # in their order of admission
        self._admitted: dict[str, set[str]] = {d: set() for d in self.caps}
        self.only = set(overrides) if overrides else None
        self._flip: dict[str, int] = {}  # rate metric -> _rate_flip, cached: it is asked per bucket and series
        self.tests: dict[str, MixtureFisherTest] = {}
        self.metric_of: dict[str, str] = {}
        self.segment_of: dict[str, tuple[str, str]] = {}  # segment test -> (dimension, value)
        self.baseline: dict[str, dict[int, int]] = {}  # value metric -> stable histogram so far
        self.baseline_n: dict[str, int] = {}
        self.thresholds: dict[str, dict[float, int]] = {}
        self.threshold_at: dict[str, int] = {}  # baseline size when the thresholds were last set
        self.sums: dict[str, list[float]] = {}  # test -> [canary trials, harm, stable trials, harm]
        self.examples: dict[str, deque[str]] = {}  # metric, or metric[dimension=value] -> conversation ids
        self.window: deque[tuple[int, dict[str, tuple[int, int, int, int]]]] = deque()
        self.buckets_seen = 0

    def _direction(self, metric: str) -> str:
        if metric in self._directions:
            return self._directions[metric]
        spec = spec_for(metric)
        return spec.direction if spec else "increase"

    def _test(self, key: TestKey) -> MixtureFisherTest:
        t = self.tests.get(key.name)
        if t is None:
            if key.dimension is None:
                level = self.budget.level(key.base)
            else:
                assert self.segment_budget is not None and key.value is not None
                level = self.segment_budget.level(key.base, key.dimension, key.value)
                self.segment_of[key.name] = (key.dimension, key.value)
            t = self.tests[key.name] = MixtureFisherTest(alpha=level, direction="increase")
            self.metric_of[key.name] = key.metric
        return t

    def base_of(self, name: str) -> str:
        """The pooled test a test restricts (the test itself when it is pooled)."""
        seg = self.segment_of.get(name)
        return name[:-len(_suffix(*seg))] if seg else name

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

    @staticmethod
    def _raw(dimension: str, b: Bucket) -> str:
        return b.channel if dimension == "channel" else b.tenant

    def _admit(self, buckets: list[Bucket]) -> None:
        """Admit the values first seen in this bucket, busiest first, while their dimension has room."""
        for dim, cap in self.caps.items():
            values, admitted = self.segment_values[dim], self._admitted[dim]
            if len(values) >= cap:
                continue
            traffic: dict[str, int] = {}
            for b in buckets:
                raw = self._raw(dim, b)
                if raw and raw != OTHER and raw not in admitted and b.version in (self.canary, self.stable):
                    traffic[raw] = traffic.get(raw, 0) + b.n
            for v in sorted(traffic, key=lambda v: (-traffic[v], v))[:cap - len(values)]:
                values.append(v)
                admitted.add(v)

    def _segment(self, dimension: str, b: Bucket) -> str | None:
        """The segment of a bucket in a dimension; None for a bucket without a tenant."""
        raw = self._raw(dimension, b)
        if not raw:
            return None
        return raw if raw in self._admitted[dimension] else OTHER

    def _counts(self, b: Bucket, thresholds: dict[str, dict[float, int]]) -> Counts:
        """Per pooled test, ``(metric, n, harmful)`` of one bucket."""
        out: Counts = {}
        for m, (n, k) in b.rates.items():
            flip = self._flip.get(m)
            if flip is None:
                flip = self._flip[m] = self._rate_flip(m)
            if flip >= 0:
                out[m] = (m, n, n - k) if flip else (m, n, k)
        for m, qs in thresholds.items():
            hist = b.values.get(m)
            if not hist or (self.only is not None and m not in self.only):
                continue
            up = self._direction(m) == "increase"
            n = sum(hist.values())
            for q, edge in qs.items():
                out[f"{m}{'>' if up else '<'}p{int(q * 100)}"] = (m, n, _beyond(hist, edge, up))
        return out

    def _rate_flip(self, m: str) -> int:
        """-1: a rate not tested; 1: tested on its misses (harmful direction decrease); 0: on its counts."""
        if (self.only is not None and m not in self.only) or spec_for(m) is None:
            return -1
        return int(self._direction(m) == "decrease")

    def tables(self, buckets: list[Bucket]) -> tuple[list[TestKey], list[tuple[int, int, int, int]]]:
        """Per test and stratum, ``(n_canary, harm_canary, n_stable, harm_stable)`` of one bucket.

        A stratum is a channel: the pooled tests see every channel, a segment test the channels of its
        segment's traffic (for a tenant, its traffic in each channel; for a channel, that channel).
        """
        thresholds = self._thresholds()
        self._admit(buckets)
        # (dimension, segment, channel) -> per side, the counts of each bucket of that stratum
        strata: dict[tuple[str | None, str | None, str], tuple[list[Counts], list[Counts]]] = {}
        for b in buckets:
            if b.version == self.canary:
                side = 0
            elif b.version == self.stable:
                side = 1
            else:
                continue
            counts = self._counts(b, thresholds)
            strata.setdefault((None, None, b.channel), ([], []))[side].append(counts)
            for dim in self.caps:
                seg = self._segment(dim, b)
                if seg is not None:
                    strata.setdefault((dim, seg, b.channel), ([], []))[side].append(counts)
        keys: list[TestKey] = []
        rows: list[tuple[int, int, int, int]] = []
        for (sdim, sseg, _), (cs, ss) in strata.items():
            if not cs or not ss:
                continue  # a stratum with one side carries no evidence
            c, s = _sum(cs), _sum(ss)
            for base, (m, nc, kc) in c.items():
                r = s.get(base)
                if r is None:
                    continue
                if sdim is None or sseg is None:
                    keys.append(TestKey(base, m, base))
                else:
                    keys.append(TestKey(base + _suffix(sdim, sseg), m, base, sdim, sseg))
                rows.append((nc, kc, r[1], r[2]))
        return keys, rows

    def observe(self, start: int, buckets: list[Bucket]) -> list[TestResult]:
        """Feed one closed bucket; return the tests in alarm (new or standing)."""
        keys, rows = self.tables(buckets)
        self.buckets_seen += 1
        seen: dict[str, tuple[int, int, int, int]] = {}
        if rows:
            arr = np.asarray(rows, dtype=np.float64)
            grid = next(iter(self.tests.values())).log_psi if self.tests else MixtureFisherTest().log_psi
            # segment tests repeat many tables of the pooled ones (a channel's, a lone tenant's): each distinct
            # table is worked out once
            uniq, inverse = np.unique(arr, axis=0, return_inverse=True)
            inc = fisher_log_lr(uniq[:, 0], uniq[:, 1], uniq[:, 2], uniq[:, 3], grid)[inverse.ravel()]
            index: dict[str, int] = {}
            first: list[TestKey] = []
            for key in keys:
                if key.name not in index:
                    index[key.name] = len(first)
                    first.append(key)
            at = np.fromiter((index[k.name] for k in keys), dtype=np.intp, count=len(keys))
            lr = np.zeros((len(first), grid.size))
            np.add.at(lr, at, inc)  # in row order, as adding one row after the other would
            counts = np.zeros((len(first), 4), dtype=np.int64)
            np.add.at(counts, at, np.asarray(rows, dtype=np.int64))
            MixtureFisherTest.add_each([self._test(key) for key in first], lr, counts)
            for key, c in zip(first, counts.tolist(), strict=True):
                s = self.sums.setdefault(key.name, [0, 0, 0, 0])
                for j in range(4):
                    s[j] += c[j]
                seen[key.name] = tuple(c)  # type: ignore[assignment]
        self.window.append((start, seen))
        while self.window and self.window[0][0] <= start - self.settings.window:
            self.window.popleft()
        for b in buckets:
            if b.version == self.canary:
                segs = [_suffix(d, v) for d in self.caps if (v := self._segment(d, b)) is not None]
                for m, ids in b.examples.items():
                    self.examples.setdefault(m, deque(maxlen=10)).extend(ids)
                    for suffix in segs:
                        self.examples.setdefault(m + suffix, deque(maxlen=10)).extend(ids)
            elif b.version == self.stable:
                for m, hist in b.values.items():
                    mine = self.baseline.setdefault(m, {})
                    for k, cnt in hist.items():
                        mine[k] = mine.get(k, 0) + cnt
                    self.baseline_n[m] = self.baseline_n.get(m, 0) + sum(hist.values())
        return [
            TestResult(name, self.metric_of[name], self.is_critical(name), self.has_enough_samples(name))
            for name, t in self.tests.items() if t.alarm
        ]

    def is_critical(self, name: str) -> bool:
        """Whether test ``name`` may roll back on its own (its metric's ``critical``)."""
        return self._critical.get(self.metric_of[name], True)

    def has_enough_samples(self, name: str) -> bool:
        """Whether test ``name`` has the canary observations its metric needs before it may act."""
        return self.tests[name].counts[0] >= self._min_samples.get(self.metric_of[name], self.settings.min_samples)

    def evidence(self, names: list[str] | None = None, top: int = 5) -> list[Evidence]:
        """Evidence of the named tests, or of the ``top`` closest to their thresholds."""
        chosen = names if names is not None else sorted(
            self.tests, key=lambda n: self.tests[n].statistic - self.tests[n].threshold, reverse=True)[:top]
        out = []
        for name in chosen:
            t = self.tests[name]
            nc, kc, ns, ks = t.counts
            metric = self.metric_of[name]
            if self.base_of(name) == metric and self._direction(metric) == "decrease":
                kc, ks = nc - kc, ns - ks  # the test counts misses; the evidence shows the rate itself
            out.append(Evidence(
                metric=name, detector=DETECTOR, statistic=round(t.statistic, 4), threshold=round(t.threshold, 4),
                p_value=float(f"{t.p_value:.4g}"), n_canary=nc, n_stable=ns,
                canary_value=round(kc / nc, 6) if nc else None, stable_value=round(ks / ns, 6) if ns else None))
        return out

    def example_ids(self, names: list[str]) -> list[str]:
        ids: list[str] = []
        for name in names:
            metric = self.metric_of.get(name, name)
            seg = self.segment_of.get(name)
            for i in self.examples.get(metric + _suffix(*seg) if seg else metric, ()):
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
        state = {
            "stable": self.stable, "canary": self.canary, "budget": self.budget.to_state(),
            "tests": {n: t.to_state() for n, t in self.tests.items()}, "metric_of": self.metric_of,
            "baseline": {m: {str(k): v for k, v in h.items()} for m, h in self.baseline.items()},
            "thresholds": {m: {str(q): b for q, b in t.items()} for m, t in self.thresholds.items()},
            "threshold_at": self.threshold_at,
            "sums": self.sums, "examples": {m: list(d) for m, d in self.examples.items()},
            "window": [[s, {k: list(v) for k, v in seen.items()}] for s, seen in self.window],
            "buckets_seen": self.buckets_seen,
        }
        if self.segment_budget is not None:  # absent without segments: the checkpoint is as it always was
            state["segments"] = {"budget": self.segment_budget.to_state(), "values": self.segment_values,
                                 "of": {n: list(s) for n, s in self.segment_of.items()}}
        return state

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
        # The budget the rollout started with stays, even if the config changed since: its pooled share was
        # set with it, and a segment budget added now would spend more than alpha.
        seg = state.get("segments")
        if seg is None:
            self.segment_budget = None
            self.caps, self.segment_values, self.segment_of = {}, {}, {}
        else:
            self.segment_budget = SegmentBudget.from_state(seg["budget"])
            self.caps = {d: k - 1 for d, k in self.segment_budget.slots.items()}
            self.segment_values = {d: [str(v) for v in seg["values"].get(d, [])] for d in self.caps}
            self.segment_of = {n: (str(d), str(v)) for n, (d, v) in seg["of"].items()}
        self._admitted = {d: set(vs) for d, vs in self.segment_values.items()}
