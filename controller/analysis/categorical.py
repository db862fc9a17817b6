"""Categorical drift: the share of each category of a field, canary against stable, tested both ways.

The categorical fields are the interaction's ``intent``, ``model`` and ``error_type``, each of its
``finish_reasons`` and the names of its ``tool_calls`` (:data:`controller.ingest.catalog.CATEGORICAL`). Per
field, the *trials* are the labels it carries (an interaction with an intent; a finish reason; a tool call) and
a category's *share* the trials with that value. Each category is a rate like the others: per bucket and
stratum (:func:`controller.analysis.strata.stratify`, by channel) a one-vs-rest 2x2 table
``(canary trials, canary trials of the category, stable trials, stable trials of the category)``, judged by a
mixture Fisher SPRT (:class:`detectors.mixture_fisher.MixtureFisherTest`) whose grid of odds ratios is
two-sided (1/10 to 1/1.1 and 1.1 to 10): a category's share may rise or fall. Given the margins, under the
null (within a stratum, canary and stable labels exchangeable) each table is hypergeometric, so the test is
exact and anytime-valid as the rate tests are.

Only ``max_categories`` values of a field are tested on their own, admitted busiest first among those that
appear in a bucket (their counts over both versions, a margin of the tables, so the admission keeps the tests
exact); the others are pooled into one ``other`` test (a producer's own value ``other`` joins it). The test of
``intent = billing`` is ``intent_share[billing]``; the field's pooled test is ``intent_share[other]``.

The budget: the categorical tests share ``alpha * SHARE`` (:data:`SHARE`), the rate and value tests keep the
rest. Each field gets an equal part, and within a field the i-th value tested (``other`` among them, at most
``max_categories + 1`` values) the part :class:`detectors.alpha.SegmentBudget` gives the i-th value of a
family; the levels of every categorical test that can ever exist sum to at most ``alpha * SHARE``, so by a
union bound with the other tests the probability of any false alarm or rollback stays at most ``alpha``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from controller.analysis.segments import Segments
from controller.analysis.strata import Counts, Table, TestKey, stratify
from controller.config import Analysis, Categorical
from controller.ingest.buckets import OTHER, Bucket
from controller.ingest.catalog import CATEGORICAL
from detectors.alpha import SegmentBudget
from detectors.mixture_fisher import MixtureFisherTest, default_log_psi, fisher_log_lr

__all__ = ["GRID", "SHARE", "CategoricalShares", "critical", "family", "rest_alpha", "test_name"]

#: Share of the rollout's ``alpha`` the categorical tests get (when any field is compared).
SHARE = 0.2
#: The two-sided grid of log odds ratios of every categorical test: 1/10 to 1/1.1, then 1.1 to 10.
GRID: NDArray[np.float64] = np.concatenate([default_log_psi("decrease")[::-1], default_log_psi("increase")])
_DIMENSION = "category"  # the SegmentBudget dimension a field's values are discovered in
_NO_SEGMENTS = Segments({})


def family(field: str) -> str:
    """The pseudo-metric of a field's tests (``intent_share``): their ``metric`` in evidence and alarms."""
    return f"{field}_share"


def test_name(field: str, value: str) -> str:
    """The test of one value of a field.

    >>> test_name("intent", "billing"), test_name("tool", "other")
    ('intent_share[billing]', 'tool_share[other]')
    """
    return f"{family(field)}[{value}]"


def rest_alpha(settings: Analysis) -> float:
    """What the rate and value tests share of ``alpha``: all of it without categorical fields.

    >>> from controller.config import Analysis, Categorical
    >>> round(rest_alpha(Analysis(alpha=0.01)), 6), rest_alpha(Analysis(alpha=0.01, categorical=Categorical(fields=())))
    (0.008, 0.01)
    """
    return settings.alpha * (1.0 - SHARE) if settings.categorical.fields else settings.alpha


def critical(settings: Categorical) -> dict[str, bool]:
    """Whether the tests of each field's family may act (``action: rollback``): for every field, so that a
    checkpoint's fields no longer configured act as the config says too."""
    return {family(f): settings.action == "rollback" for f in CATEGORICAL}


class CategoricalShares:
    """The category-share tests of one rollout: which values are tested apart, their levels, their tables.

    ``alpha`` is the categorical tests' share of the rollout's budget; ``change_every`` the fresh starts of
    each test, in buckets with tables (as the rate tests have them).
    """

    def __init__(self, settings: Categorical, alpha: float, change_every: int = 0) -> None:
        self.fields: tuple[str, ...] = tuple(settings.fields)
        self.cap = settings.max_categories
        self.change_every = change_every
        self.budget = SegmentBudget(alpha, known=[family(f) for f in self.fields], slots={_DIMENSION: self.cap + 1},
                                    reserve=0.0)
        self.values: dict[str, list[str]] = {f: [] for f in self.fields}  # in their order of admission
        self.of: dict[str, tuple[str, str]] = {}  # test -> (field, value)
        self._names: dict[str, list[tuple[str, str]]] = {f: [] for f in self.fields}  # (value, test) admitted

    @classmethod
    def of_settings(cls, settings: Analysis, change_every: int = 0) -> CategoricalShares | None:
        """The categorical tests of a rollout's analysis, with their share of its ``alpha``; None without fields."""
        cat = settings.categorical
        return cls(cat, settings.alpha * SHARE, change_every) if cat.fields else None

    def admit(self, buckets: list[Bucket], versions: tuple[str, str]) -> None:
        """Admit the values first seen in these buckets (of ``versions`` only), busiest first over both versions,
        while their field has room."""
        for f in self.fields:
            values = self.values[f]
            if len(values) >= self.cap:
                continue
            have = {v for v, _ in self._names[f]}
            traffic: dict[str, int] = {}
            for b in buckets:
                counts = b.categories.get(f)
                if counts and b.version in versions:
                    for v, c in counts.items():
                        if v != OTHER and v not in have:
                            traffic[v] = traffic.get(v, 0) + c
            for v in sorted(traffic, key=lambda v: (-traffic[v], v))[:self.cap - len(values)]:
                self._add(f, v)

    def _add(self, field: str, value: str) -> None:
        self.values[field].append(value)
        self._names[field].append((value, test_name(field, value)))

    def counts(self, b: Bucket) -> Counts:
        """Per categorical test, ``(metric, trials, trials of the value)`` of one bucket: every admitted value of
        each field the bucket carries, and the field's ``other`` (the rest)."""
        out: Counts = {}
        for f in self.fields:
            cats = b.categories.get(f)
            if not cats:
                continue
            n = sum(cats.values())
            metric = family(f)
            rest = n
            for v, name in self._names[f]:
                k = cats.get(v, 0)
                out[name] = (metric, n, k)
                rest -= k
            out[test_name(f, OTHER)] = (metric, n, rest)
        return out

    def tables(self, buckets: list[Bucket], canary: str, stable: str) -> tuple[list[TestKey], list[Table]]:
        """Per categorical test and stratum, the table of one bucket (values admitted first)."""
        self.admit(buckets, (canary, stable))
        return stratify(buckets, canary, stable, self.counts, _NO_SEGMENTS)

    def _test(self, key: TestKey, tests: MutableMapping[str, MixtureFisherTest],
              metric_of: MutableMapping[str, str]) -> MixtureFisherTest:
        t = tests.get(key.name)
        if t is None:
            field = key.metric[:-len("_share")]
            value = key.name[len(key.metric) + 1:-1]
            level = self.budget.level(key.metric, _DIMENSION, value)
            t = tests[key.name] = MixtureFisherTest(alpha=level, log_psi=GRID, change_every=self.change_every)
            metric_of[key.name] = key.metric
            self.of[key.name] = (field, value)
        return t

    def observe(self, buckets: list[Bucket], canary: str, stable: str, tests: MutableMapping[str, MixtureFisherTest],
                metric_of: MutableMapping[str, str]) -> dict[str, tuple[int, int, int, int]]:
        """Feed one closed bucket to the categorical tests (created in ``tests`` on first sight, their metric in
        ``metric_of``); return each fed test's counts in this bucket."""
        keys, rows = self.tables(buckets, canary, stable)
        if not rows:
            return {}
        arr = np.asarray(rows, dtype=np.float64)
        # the same table recurs (a value absent in a stratum, the same margins): each distinct one is worked out once
        uniq, inverse = np.unique(arr, axis=0, return_inverse=True)
        inc = fisher_log_lr(uniq[:, 0], uniq[:, 1], uniq[:, 2], uniq[:, 3], GRID)[inverse.ravel()]
        index: dict[str, int] = {}
        first: list[TestKey] = []
        for key in keys:
            if key.name not in index:
                index[key.name] = len(first)
                first.append(key)
        at = np.fromiter((index[k.name] for k in keys), dtype=np.intp, count=len(keys))
        lr = np.zeros((len(first), GRID.size))
        np.add.at(lr, at, inc)
        counts = np.zeros((len(first), 4), dtype=np.int64)
        np.add.at(counts, at, arr.astype(np.int64))
        MixtureFisherTest.add_each([self._test(key, tests, metric_of) for key in first], lr, counts)
        return {key.name: tuple(c) for key, c in zip(first, counts.tolist(), strict=True)}  # type: ignore[misc]

    def to_state(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "cap": self.cap, "budget": self.budget.to_state(),
                "values": {f: list(vs) for f, vs in self.values.items()},
                "of": {n: list(fv) for n, fv in self.of.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any], change_every: int = 0) -> CategoricalShares:
        """The tests of a checkpoint: its fields, cap and budget (the ones the rollout started with)."""
        out = cls.__new__(cls)
        out.fields = tuple(str(f) for f in state["fields"])
        out.cap = int(state["cap"])
        out.change_every = change_every
        out.budget = SegmentBudget.from_state(state["budget"])
        out.values = {f: [] for f in out.fields}
        out._names = {f: [] for f in out.fields}
        for f in out.fields:
            for v in state["values"].get(f, []):
                out._add(f, str(v))
        out.of = {n: (str(f), str(v)) for n, (f, v) in state["of"].items()}
        return out
