"""Canary analysis: every closed bucket becomes stratified 2x2 tables, one per test and channel.

Rate metrics compare harmful outcomes per trial. Value metrics compare the share of values beyond the
stable version's running quantiles (:mod:`controller.analysis.thresholds`). Every test is a mixture Fisher
SPRT on the tables of :mod:`controller.analysis.strata`, at the level the rollout's alpha budget gives it
(:mod:`controller.analysis.budget`).

With ``segments`` (``channel``, ``tenant``), every pooled test also gets one test per value of each
dimension (:mod:`controller.analysis.segments`), on that value's traffic only
(``escalation_rate[tenant=acme]``, stratified by channel like the pooled test), so that a harm confined to
one channel or tenant is not diluted by the others. The budget's union bound over every test that can ever
exist keeps the probability of rolling back a healthy canary at most ``alpha`` however many segment values
appear, and when they appear.

The category mix of the categorical fields (intent, model, finish reason, error type, tool) is compared too,
each value's share tested both ways, with a share of the budget of its own (:mod:`controller.analysis.categorical`).

This module holds :class:`CanaryAnalysis`, which ties them together: it feeds each bucket's tables to the
tests, keeps the counts, windows, examples and evidence of each test, and its checkpoint state.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.analysis import categorical
from controller.analysis.budget import SEGMENT_SHARE, RolloutBudget
from controller.analysis.categorical import CategoricalShares
from controller.analysis.segments import Segments, suffix
from controller.analysis.strata import Counts, Stratum, TestKey
from controller.analysis.thresholds import Thresholds, test_names
from controller.config import Analysis
from controller.contracts.decisions import Evidence
from controller.ingest.buckets import Bucket
from controller.ingest.catalog import CATALOG, spec_for
from detectors.alpha import AlphaBudget, SegmentBudget
from detectors.mixture_fisher import MixtureFisherTest, default_log_psi, fisher_log_lr
from detectors.power import harmful_share, samples_to_catch

__all__ = ["SEGMENT_SHARE", "CanaryAnalysis", "Gap", "TestKey", "TestResult"]

DETECTOR = "mixture-fisher"
_GRID = default_log_psi("increase")  # the grid of every rate and value test


@dataclass(frozen=True)
class Gap:
    """A test that cannot yet tell a harm of the promotion's size: ``has`` canary observations, ``needs`` more."""

    name: str
    has: int
    needs: float

    def __str__(self) -> str:
        if self.name == "canary":
            return "no canary observations in a closed stratum yet"
        need = "too few stable observations" if math.isinf(self.needs) else f"{self.has} of ~{math.ceil(self.needs)}"
        return f"{self.name} {need}"


@dataclass(frozen=True)
class TestResult:
    """A test that has reached its threshold."""

    name: str
    metric: str
    critical: bool
    enough_samples: bool


class CanaryAnalysis:
    """The tests of one rollout (one stable version against one canary version)."""

    def __init__(self, stable: str, canary: str, settings: Analysis) -> None:
        self.stable = stable
        self.canary = canary
        self.settings = settings
        overrides = {m.name: m for m in settings.metrics}
        self._directions: dict[str, str] = {}
        self._weights: dict[str, float] = {}
        self._critical: dict[str, bool] = {}
        self._min_samples: dict[str, int] = {}
        for name, o in overrides.items():
            spec = spec_for(name)
            assert spec is not None  # the config parser refuses unknown metrics
            self._directions[name] = o.direction or spec.direction
            self._critical[name] = o.critical
            self._min_samples[name] = o.min_samples or settings.min_samples
            if o.weight is not None:
                self._weights[name] = o.weight
        # values of a dimension tested apart, besides the pooled "other"
        self.segments = Segments.of_settings(settings.segments, settings.max_segments)
        self.only = set(overrides) if overrides else None
        # With explicit metrics, the whole budget goes to them from the start. Without, it is split when the first
        # stratum is fed, over the metrics the events carry by then (a metric no producer sends takes no share),
        # with a reserve for those that appear later: the split is fixed before any test has evidence.
        self.allocated = bool(overrides)
        self._present: set[str] = set()
        self.budgets = self._budgets(list(overrides) if overrides else list(CATALOG))
        # fresh starts, counted in buckets in which the test has tables (see MixtureFisherTest.change_every)
        self._change_every = math.ceil(settings.change_every / self.stratum_seconds) if settings.change_every else 0
        # the category-share tests take one table per bucket: their fresh starts are counted in buckets
        self._bucket_change_every = (math.ceil(settings.change_every / settings.bucket_seconds)
                                     if settings.change_every else 0)
        self.categorical = CategoricalShares.of_settings(settings, self._bucket_change_every)
        self._critical.update(categorical.critical(settings.categorical))
        self._flip: dict[str, int] = {}  # rate metric -> _rate_flip, cached: it is asked per bucket and series
        self.tests: dict[str, MixtureFisherTest] = {}
        self.metric_of: dict[str, str] = {}
        self.segment_of: dict[str, tuple[str, str]] = {}  # segment test -> (dimension, value)
        self.thresholds = Thresholds(settings.baseline_min_samples, self._direction)
        self.sums: dict[str, list[float]] = {}  # test -> [canary trials, harm, stable trials, harm]
        self.examples: dict[str, deque[str]] = {}  # metric, or metric[dimension=value] -> conversation ids
        self.window: deque[tuple[int, dict[str, tuple[int, int, int, int]]]] = deque()
        self.buckets_seen = 0
        self.stratum = Stratum()  # the open stratum: buckets added, tables not yet fed
        self._frozen: dict[str, dict[float, int]] = {}  # the value thresholds of the open stratum

    def weight(self, metric: str) -> float:
        """Share of the budget of each test of ``metric``, relative to the others': its override's, else the
        catalog's, halved for a metric that may not roll back (``critical: false``)."""
        w = self._weights.get(metric)
        if w is None:
            spec = spec_for(metric)
            w = (spec.weight if spec else 1.0) * (1.0 if self._critical.get(metric, True) else 0.5)
        return w

    def _budgets(self, metrics: list[str]) -> RolloutBudget:
        known = {t: self.weight(m) for m in metrics
                 for t in test_names(m, spec_for(m).kind, self._direction(m))}  # type: ignore[union-attr]
        # with explicit metrics there is nothing to discover, so the whole budget goes to them
        reserve = 0.0 if self.only is not None else 0.2
        # the category-share tests hold their share of alpha apart (controller.analysis.categorical)
        return RolloutBudget(categorical.rest_alpha(self.settings), known, reserve,
                             {d: c + 1 for d, c in self.segments.caps.items()})

    @property
    def stratum_seconds(self) -> int:
        """Event time a stratum spans (``spec.analysis.stratum``, in whole buckets, at least one)."""
        b = self.settings.bucket_seconds
        return max(b, math.ceil(self.settings.stratum / b) * b)

    @property
    def budget(self) -> AlphaBudget:
        """The pooled tests' budget."""
        return self.budgets.pooled

    @property
    def segment_budget(self) -> SegmentBudget | None:
        """The segment tests' budget; None without segments."""
        return self.budgets.segments

    @property
    def caps(self) -> dict[str, int]:
        """Values of each dimension tested apart, besides the pooled ``other``."""
        return self.segments.caps

    @property
    def segment_values(self) -> dict[str, list[str]]:
        """The values of each dimension tested apart, in their order of admission."""
        return self.segments.values

    def _direction(self, metric: str) -> str:
        if metric in self._directions:
            return self._directions[metric]
        spec = spec_for(metric)
        return spec.direction if spec else "increase"

    def _test(self, key: TestKey) -> MixtureFisherTest:
        t = self.tests.get(key.name)
        if t is None:
            level = self.budgets.level(key.base, key.dimension, key.value)
            if key.dimension is not None and key.value is not None:
                self.segment_of[key.name] = (key.dimension, key.value)
            t = self.tests[key.name] = MixtureFisherTest(alpha=level, direction="increase",
                                                         change_every=self._change_every)
            self.metric_of[key.name] = key.metric
        return t

    def base_of(self, name: str) -> str:
        """The pooled test a test restricts (the test itself when it is pooled)."""
        seg = self.segment_of.get(name)
        return name[:-len(suffix(*seg))] if seg else name

    def _counts(self, b: Bucket, thresholds: dict[str, dict[float, int]]) -> Counts:
        """Per pooled test, ``(metric, n, harmful)`` of one bucket."""
        out: Counts = {}
        for m, (n, k) in b.rates.items():
            flip = self._flip.get(m)
            if flip is None:
                flip = self._flip[m] = self._rate_flip(m)
            if flip >= 0:
                out[m] = (m, n, n - k) if flip else (m, n, k)
        for name, m, n, k in self.thresholds.exceedances(b.values, thresholds, self.only):
            out[name] = (m, n, k)
        return out

    def _rate_flip(self, m: str) -> int:
        """-1: a rate not tested; 1: tested on its misses (harmful direction decrease); 0: on its counts."""
        if (self.only is not None and m not in self.only) or spec_for(m) is None:
            return -1
        return int(self._direction(m) == "decrease")

    def observe(self, start: int, buckets: list[Bucket]) -> list[TestResult]:
        """Add one closed bucket to the open stratum; at the stratum's end, feed its tables to the tests.
        Return the tests in alarm (new or standing)."""
        if self.stratum.start is not None and start >= self.stratum.start + self.stratum_seconds:
            self.cut()  # a gap in the traffic: the open stratum ended before this bucket
        st = self.stratum
        if st.start is None:
            # the value thresholds hold for the whole stratum, set from earlier strata only: a table of the
            # stratum must not depend on which of its own interactions were stable
            self._frozen = {m: dict(q) for m, q in self.thresholds.current().items()}
        self.segments.admit(buckets, (self.canary, self.stable))
        frozen = self._frozen
        st.add(start, buckets, self.canary, self.stable, lambda b: self._counts(b, frozen), self.segments)
        head = st.split()
        if head is not None:
            self._feed(head)  # the share changed inside the stratum: what came before is a stratum of its own
        if self.categorical is not None:  # one table per bucket and channel (controller.analysis.categorical)
            shares: dict[str, tuple[int, int, int, int]] = {}
            for name, c4 in self.categorical.observe(buckets, self.canary, self.stable, self.tests,
                                                     self.metric_of).items():
                s = self.sums.setdefault(name, [0, 0, 0, 0])
                for j in range(4):
                    s[j] += c4[j]
                shares[name] = c4
            if shares:
                self.window.append((start, shares))
        self.buckets_seen += 1
        if not self.allocated:
            for b in buckets:
                if b.version == self.canary or b.version == self.stable:
                    self._present.update(m for m in b.rates if spec_for(m) is not None)
                    self._present.update(m for m in b.values if spec_for(m) is not None)
        for b in buckets:
            if b.version == self.canary:
                segs = self.segments.suffixes(b)
                for m, ids in b.examples.items():
                    self.examples.setdefault(m, deque(maxlen=10)).extend(ids)
                    for suffix in segs:
                        self.examples.setdefault(m + suffix, deque(maxlen=10)).extend(ids)
            elif b.version == self.stable:
                self.thresholds.add(b.values)
        if st.start is not None and start + self.settings.bucket_seconds >= st.start + self.stratum_seconds:
            self.cut()
        return [
            TestResult(name, self.metric_of[name], self.is_critical(name), self.has_enough_samples(name))
            for name, t in self.tests.items() if t.alarm
        ]

    def cut(self) -> None:
        """End the open stratum here and feed its tables to the tests: at its length, or where the canary's
        weight changes (a table must not pool interactions assigned at different weights)."""
        st, self.stratum = self.stratum, Stratum()
        self._feed(st)

    def _feed(self, st: Stratum) -> None:
        if st.start is None:
            return
        keys, rows = st.tables()
        seen: dict[str, tuple[int, int, int, int]] = {}
        if rows and not self.allocated:
            self.budgets = self._budgets(sorted(self._present))  # sorted: the same split live and in replay
            self.allocated = True
            self._present = set()
        if rows:
            arr = np.asarray(rows, dtype=np.float64)
            grid = _GRID
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
        self.window.append((st.start, seen))
        while self.window and self.window[0][0] <= st.start - self.settings.window:
            self.window.popleft()

    def is_categorical(self, name: str) -> bool:
        """Whether test ``name`` compares a category's share (``intent_share[billing]``), both ways."""
        return self.categorical is not None and name in self.categorical.of

    def is_critical(self, name: str) -> bool:
        """Whether test ``name`` may roll back on its own (its metric's ``critical``)."""
        return self._critical.get(self.metric_of[name], True)

    def has_enough_samples(self, name: str) -> bool:
        """Whether test ``name`` has the canary observations its metric needs before it may act."""
        return self.tests[name].counts[0] >= self._min_samples.get(self.metric_of[name], self.settings.min_samples)

    def alarm_threshold(self, name: str) -> float:
        """The log-likelihood ratio, at the true effect, that test ``name`` needs before its alarm: its level's
        ``log(1/level)``, the weight of its first start (when it starts afresh) and its mixture's grid."""
        t = self.tests[name]
        return t.threshold + (math.log(2.0) if t.change_every else 0.0) + math.log(t.log_psi.size)

    def promotion_gaps(self) -> list[Gap]:
        """The critical pooled tests without the canary data to have caught a harm of ``spec.analysis.promotion``'s
        size (:func:`detectors.power.samples_to_catch`), with the observations each still needs; a gap named
        ``canary`` when no test has any canary observation. Empty: a step may pass."""
        p = self.settings.promotion
        if not p.evidence:
            return []
        gaps: list[Gap] = []
        for name, t in self.tests.items():
            if name in self.segment_of or self.is_categorical(name) or not self.is_critical(name):
                continue
            nc, _, ns, ks = t.counts
            if nc == 0:
                continue
            p0 = ks / ns if ns else 0.0
            p1 = harmful_share(min(p0, 1.0 - 1e-9), p.odds_ratio, p.increase)
            need = samples_to_catch(min(p0, 1.0 - 1e-9), p1, self.alarm_threshold(name), p.power, ns / (ns + nc))
            if nc < need:
                gaps.append(Gap(name, nc, need))
        if not any(t.counts[0] for t in self.tests.values()):
            gaps.append(Gap("canary", 0, math.inf))
        return gaps

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
            for i in self.examples.get(metric + suffix(*seg) if seg else metric, ()):
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
            **self.thresholds.to_state(),
            "sums": self.sums, "examples": {m: list(d) for m, d in self.examples.items()},
            "window": [[s, {k: list(v) for k, v in seen.items()}] for s, seen in self.window],
            "buckets_seen": self.buckets_seen, "allocated": self.allocated, "present": sorted(self._present),
            "stratum": {**self.stratum.to_state(),
                        "thresholds": {m: {str(q): b for q, b in t.items()} for m, t in self._frozen.items()}},
        }
        if self.categorical is not None:  # absent without categorical fields, and in older checkpoints
            state["categorical"] = self.categorical.to_state()
        if self.segment_budget is not None:  # absent without segments: the checkpoint is as it always was
            state["segments"] = {"budget": self.segment_budget.to_state(), "values": self.segments.values,
                                 "of": {n: list(s) for n, s in self.segment_of.items()}}
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.tests = {n: MixtureFisherTest.from_state(s) for n, s in state["tests"].items()}
        self.metric_of = dict(state["metric_of"])
        self.thresholds.load_state(state)
        self.sums = {k: list(v) for k, v in state["sums"].items()}
        self.examples = {m: deque(ids, maxlen=10) for m, ids in state["examples"].items()}
        self.window = deque((int(s), {k: tuple(v) for k, v in seen.items()}) for s, seen in state["window"])
        self.buckets_seen = int(state["buckets_seen"])
        # absent from checkpoints written before the budget was split over the metrics present: theirs was fixed
        self.allocated = bool(state.get("allocated", True))
        self._present = set(state.get("present", ()))
        stratum = state.get("stratum")  # absent from checkpoints written before strata pooled buckets
        self.stratum = Stratum.from_state(stratum)
        self._frozen = {} if stratum is None else {
            m: {float(q): int(b) for q, b in t.items()} for m, t in stratum["thresholds"].items()}
        # The budget the rollout started with stays, even if the config changed since: its pooled share was
        # set with it, and a segment budget added now would spend more than alpha.
        seg = state.get("segments")
        self.budgets.load(state["budget"], None if seg is None else seg["budget"])
        self.segments.load({d: k - 1 for d, k in self.budgets.slots.items()}, {} if seg is None else seg["values"])
        self.segment_of = {} if seg is None else {n: (str(d), str(v)) for n, (d, v) in seg["of"].items()}
        # the categorical tests the rollout started with (fields, cap, budget); none if it started without them
        cat = state.get("categorical")
        self.categorical = None if cat is None else CategoricalShares.from_state(cat, self._bucket_change_every)
