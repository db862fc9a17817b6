"""Tests of the pure detectors: the mixture Fisher SPRT (``detectors.mixture_fisher``), ``AlphaBudget`` and
``SegmentBudget``.

The statistical tests use fixed seeds (so they are deterministic) and are vectorised over thousands of
simulated streams with :func:`fisher_log_lr`; a separate test checks that this vectorised statistic is the
one :class:`MixtureFisherTest` computes. False-alarm rates are checked against ``alpha`` plus three
binomial standard errors: Ville's inequality bounds the rate by ``alpha`` over an unbounded watch, so a
broken martingale (a wrong normalisation, a missing conditioning) overshoots by far more.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy.special import logsumexp
from scipy.stats import hypergeom, nchypergeom_fisher

from detectors import AlphaBudget, MixtureFisherTest, SegmentBudget, fisher_log_lr
from detectors.mixture_fisher import default_log_psi, start_log_weight

Table = tuple[int, int, int, int]


@st.composite
def tables(draw: st.DrawFn, max_n: int = 30) -> Table:
    n_c = draw(st.integers(0, max_n))
    n_s = draw(st.integers(0, max_n))
    return n_c, draw(st.integers(0, n_c)), n_s, draw(st.integers(0, n_s))


def feed_one_by_one(test: MixtureFisherTest, rows: list[Table]) -> None:
    for row in rows:
        test.update(*row)


def columns(rows: list[Table]) -> tuple[list[int], list[int], list[int], list[int]]:
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]


Counts = NDArray[np.int64]


def stream_alarms(n_c: Counts, k_c: Counts, n_s: Counts, k_s: Counts, alpha: float,
                  direction: str = "increase") -> NDArray[np.bool_]:
    """Whether each stream (a row of ``(streams, buckets)`` arrays) ever alarms, computed vectorised."""
    grid = default_log_psi(direction)  # type: ignore[arg-type]
    streams, buckets = n_c.shape
    inc = fisher_log_lr(n_c.ravel(), k_c.ravel(), n_s.ravel(), k_s.ravel(), grid)
    inc = inc.reshape(streams, buckets, -1)
    stat = logsumexp(np.cumsum(inc, axis=1), axis=2) - math.log(grid.size)
    return np.asarray(stat.max(axis=1) >= math.log(1.0 / alpha))


def three_se(alpha: float, n: int) -> float:
    return alpha + 3.0 * math.sqrt(alpha * (1.0 - alpha) / n)


# --- fisher_log_lr --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("table", "log_psi"), [((10, 8, 10, 2), 1.0), ((5, 1, 45, 6), 0.7),
                                                ((3, 3, 7, 0), -1.2), ((12, 4, 30, 20), 2.3)])
def test_fisher_log_lr_matches_scipy_hypergeometric_laws(table: Table, log_psi: float) -> None:
    n_c, k_c, n_s, k_s = table
    total, k = n_c + n_s, k_c + k_s
    expected = (nchypergeom_fisher.logpmf(k_c, total, n_c, k, math.exp(log_psi))
                - hypergeom.logpmf(k_c, total, n_c, k))
    got = fisher_log_lr([n_c], [k_c], [n_s], [k_s], [log_psi])
    assert got.shape == (1, 1)
    assert got[0, 0] == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(st.lists(tables(), min_size=1, max_size=8))
def test_fisher_log_lr_is_zero_at_odds_ratio_one(rows: list[Table]) -> None:
    out = fisher_log_lr(*columns(rows), [0.0, 0.5])
    assert out.shape == (len(rows), 2)
    assert np.allclose(out[:, 0], 0.0, atol=1e-9)


@given(st.lists(tables(), min_size=1, max_size=8), st.floats(-3, 3))
def test_fisher_log_lr_is_a_likelihood_ratio(rows: list[Table], log_psi: float) -> None:
    """Under the null, E[LR] = 1 for each table: sum over the support of p0(x) * LR(x) equals one."""
    for n_c, k_c, n_s, k_s in rows:
        k = k_c + k_s
        support = np.arange(max(0, k - n_s), min(k, n_c) + 1)
        if support.size < 2:
            continue  # fixed by its margins (covered by test_degenerate_table_carries_no_evidence)
        lr = fisher_log_lr([n_c] * support.size, support, [n_s] * support.size, k - support, [log_psi])[:, 0]
        p0 = hypergeom.pmf(support, n_c + n_s, n_c, k)
        assert float(np.sum(p0 * np.exp(lr))) == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("table", [(0, 0, 10, 3), (10, 4, 0, 0), (5, 0, 45, 0), (5, 5, 45, 45), (0, 0, 0, 0)])
def test_degenerate_table_carries_no_evidence(table: Table) -> None:
    assert np.array_equal(fisher_log_lr(*([v] for v in table), default_log_psi()), np.zeros((1, 12)))


def test_fisher_log_lr_handles_mixed_degenerate_rows() -> None:
    out = fisher_log_lr([5, 0, 10], [5, 0, 8], [45, 3, 10], [2, 1, 2], [0.5, 1.0])
    assert np.all(out[1] == 0.0)
    assert np.all(out[0] > 0) and np.all(out[2] > 0)  # a canary-heavy share of harm is evidence of increase


@pytest.mark.parametrize(("args", "match"), [
    (([5, 5], [1], [5], [1]), "same length"),
    (([5], [6], [5], [1]), "0 <= k <= n"),
    (([5], [-1], [5], [1]), "0 <= k <= n"),
    (([5], [1], [5], [7]), "0 <= k <= n"),
])
def test_fisher_log_lr_validation(args: tuple[list[int], ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fisher_log_lr(*args, [0.5])


def test_default_grid() -> None:
    up, down = default_log_psi("increase"), default_log_psi("decrease")
    assert up.size == 12 and np.all(np.diff(up) > 0)
    assert up[0] == pytest.approx(math.log(1.1)) and up[-1] == pytest.approx(math.log(10.0))
    assert np.array_equal(down, -up)


# --- MixtureFisherTest: validation and bookkeeping ------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_alpha_is_validated(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        MixtureFisherTest(alpha=alpha)


@pytest.mark.parametrize("direction", ["up", "", "Increase", None])
def test_direction_is_validated(direction: object) -> None:
    with pytest.raises(ValueError, match="direction"):
        MixtureFisherTest(direction=direction)  # type: ignore[arg-type]


@pytest.mark.parametrize("grid", [[], [[0.1, 0.2]], [0.1, float("inf")], [float("nan")], 0.5])
def test_log_psi_is_validated(grid: object) -> None:
    with pytest.raises(ValueError, match="log_psi"):
        MixtureFisherTest(log_psi=grid)  # type: ignore[arg-type]


def test_fresh_test_state() -> None:
    t = MixtureFisherTest(alpha=0.05, direction="decrease")
    assert t.statistic == pytest.approx(0.0, abs=1e-12)
    assert t.p_value == 1.0 and not t.alarm and t.counts == (0, 0, 0, 0)
    assert t.threshold == pytest.approx(math.log(20.0))
    assert t.alpha == 0.05 and t.direction == "decrease"
    assert np.array_equal(t.log_psi, default_log_psi("decrease"))


def test_log_psi_property_is_a_copy() -> None:
    t = MixtureFisherTest()
    t.log_psi[:] = 0.0
    assert np.array_equal(t.log_psi, default_log_psi())


def test_counts_accumulate() -> None:
    t = MixtureFisherTest()
    t.update(5, 1, 45, 6)
    t.update_many([3, 0], [3, 0], [7, 2], [0, 1])
    assert t.counts == (8, 4, 54, 7)


def test_empty_update_many_changes_nothing() -> None:
    t = MixtureFisherTest()
    t.update(10, 8, 10, 2)
    before = t.to_state()
    t.update_many([], [], [], [])
    assert t.to_state() == before


def test_statistic_is_the_log_mixture_of_the_grid() -> None:
    grid = [0.3, 0.9, 1.7]
    t = MixtureFisherTest(log_psi=grid)
    rows = [(5, 3, 45, 4), (8, 2, 30, 5), (4, 4, 20, 3)]
    feed_one_by_one(t, rows)
    per_psi = fisher_log_lr(*columns(rows), grid).sum(axis=0)
    assert t.statistic == pytest.approx(math.log(np.mean(np.exp(per_psi))), rel=1e-12)


# --- MixtureFisherTest: update_many, add, checkpoints ---------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(tables(), max_size=25), st.sampled_from(["increase", "decrease"]),
       st.floats(0.01, 0.5))
def test_update_many_equals_repeated_update(rows: list[Table], direction: str, alpha: float) -> None:
    one = MixtureFisherTest(alpha=alpha, direction=direction)  # type: ignore[arg-type]
    many = MixtureFisherTest(alpha=alpha, direction=direction)  # type: ignore[arg-type]
    feed_one_by_one(one, rows)
    many.update_many(*columns(rows))
    assert many.statistic == pytest.approx(one.statistic, rel=1e-9, abs=1e-9)
    assert many.p_value == pytest.approx(one.p_value, rel=1e-9)
    assert many.alarm == one.alarm
    assert many.counts == one.counts


def test_update_many_sees_an_intermediate_alarm() -> None:
    """The running maximum inside a batch counts: strong evidence then its reversal still alarms."""
    rows: list[Table] = [(10, 10, 10, 0)] * 4 + [(10, 0, 10, 10)] * 4
    batched = MixtureFisherTest(alpha=0.01)
    batched.update_many(*columns(rows))
    assert batched.alarm
    assert batched.statistic < batched.threshold  # the end point alone would not have alarmed


def test_alarm_is_kept_until_reset() -> None:
    t = MixtureFisherTest(alpha=0.01)
    for _ in range(4):
        t.update(10, 10, 10, 0)
    assert t.alarm and t.p_value < 0.01
    p = t.p_value
    for _ in range(20):
        t.update(10, 0, 10, 10)
    assert t.alarm and t.p_value == p and t.statistic < 0
    t.reset()
    assert not t.alarm and t.p_value == 1.0 and t.counts == (0, 0, 0, 0)


@given(st.lists(st.lists(tables(), min_size=1, max_size=4), max_size=10))
def test_add_of_summed_strata_matches_update_many_at_the_end(buckets: list[list[Table]]) -> None:
    grid = default_log_psi()
    added, updated = MixtureFisherTest(), MixtureFisherTest()
    for strata in buckets:
        lr = fisher_log_lr(*columns(strata), grid).sum(axis=0)
        added.add(lr, *np.sum(np.asarray(strata), axis=0))
        updated.update_many(*columns(strata))
    assert added.statistic == pytest.approx(updated.statistic, rel=1e-9, abs=1e-9)
    assert added.counts == updated.counts


def test_add_each_refuses_mismatched_shapes_and_grids() -> None:
    tests = [MixtureFisherTest(), MixtureFisherTest()]
    with pytest.raises(ValueError, match="log_lr"):
        MixtureFisherTest.add_each(tests, np.zeros((1, 12)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="grid"):
        MixtureFisherTest.add_each([MixtureFisherTest(), MixtureFisherTest(log_psi=[0.5])], np.zeros((2, 12)),
                                   np.zeros((2, 4)))
    MixtureFisherTest.add_each([], np.zeros((0, 12)), np.zeros((0, 4)))  # nothing to do


@settings(max_examples=40, deadline=None)
@given(st.lists(tables(), max_size=20), st.lists(tables(), max_size=20),
       st.sampled_from(["increase", "decrease"]))
def test_from_state_resumes_identically(first: list[Table], rest: list[Table], direction: str) -> None:
    original = MixtureFisherTest(alpha=0.02, direction=direction)  # type: ignore[arg-type]
    feed_one_by_one(original, first)
    restored = MixtureFisherTest.from_state(json.loads(json.dumps(original.to_state())))
    assert restored.to_state() == original.to_state()
    feed_one_by_one(original, rest)
    feed_one_by_one(restored, rest)
    assert restored.statistic == original.statistic
    assert (restored.alarm, restored.p_value) == (original.alarm, original.p_value)
    assert restored.counts == original.counts
    assert (restored.alpha, restored.direction) == (original.alpha, original.direction)


def test_from_state_keeps_a_custom_grid_and_a_standing_alarm() -> None:
    t = MixtureFisherTest(alpha=0.1, log_psi=[0.4, 2.0])
    for _ in range(5):
        t.update(10, 9, 10, 1)
    for _ in range(30):
        t.update(10, 0, 10, 9)
    assert t.alarm and t.statistic < t.threshold
    r = MixtureFisherTest.from_state(json.loads(json.dumps(t.to_state())))
    assert r.alarm and r.p_value == t.p_value
    assert np.array_equal(r.log_psi, [0.4, 2.0])


# --- MixtureFisherTest: no evidence, no alarm -----------------------------------------------------------
@st.composite
def proportional_tables(draw: st.DrawFn) -> Table:
    """A table where the canary and baseline rates are exactly equal: k_c / n_c == k_s / n_s."""
    d = draw(st.integers(1, 10))
    j = draw(st.integers(0, d))
    u, v = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    return d * u, j * u, d * v, j * v


@settings(max_examples=80, deadline=None)
@given(st.lists(proportional_tables(), min_size=1, max_size=40), st.sampled_from(["increase", "decrease"]))
def test_identical_rates_never_alarm(rows: list[Table], direction: str) -> None:
    t = MixtureFisherTest(alpha=0.5, direction=direction)  # type: ignore[arg-type]
    feed_one_by_one(t, rows)
    assert t.statistic <= 1e-9
    assert not t.alarm
    assert t.p_value == pytest.approx(1.0, abs=1e-9)


def test_long_identical_stream_never_alarms() -> None:
    t = MixtureFisherTest(alpha=0.01)
    for i in range(2000):
        k = i % 4
        t.update(5, k, 45, 9 * k)
    assert not t.alarm and t.p_value == pytest.approx(1.0)


def test_all_zero_harms_carry_no_evidence() -> None:
    t = MixtureFisherTest(alpha=0.5)
    t.update_many([5] * 1000, [0] * 1000, [45] * 1000, [0] * 1000)
    assert t.statistic == pytest.approx(0.0, abs=1e-12) and not t.alarm and t.p_value == 1.0
    assert t.counts == (5000, 0, 45000, 0)


# --- calibration and power ------------------------------------------------------------------------------
def test_vectorised_statistic_is_the_tests_statistic() -> None:
    rng = np.random.default_rng(11)
    n_c = np.full((6, 40), 5)
    n_s = np.full((6, 40), 45)
    p_c = np.array([0.36, 0.36, 0.36, 0.12, 0.12, 0.12])[:, None]
    k_c, k_s = rng.binomial(n_c, p_c), rng.binomial(n_s, 0.12)
    vectorised = stream_alarms(n_c, k_c, n_s, k_s, alpha=0.05)
    assert vectorised.any() and not vectorised.all()  # both outcomes are compared
    for i in range(6):
        t = MixtureFisherTest(alpha=0.05)
        feed_one_by_one(t, list(zip(n_c[i], k_c[i], n_s[i], k_s[i], strict=True)))
        assert t.alarm == vectorised[i]


@pytest.mark.slow
def test_false_alarm_rate_constant_split() -> None:
    """2000 null streams x 200 buckets of 5 canary vs 45 baseline trials, Bernoulli(0.12) on both sides."""
    rng = np.random.default_rng(20240301)
    streams, buckets, alpha = 2000, 200, 0.05
    n_c = np.full((streams, buckets), 5)
    n_s = np.full((streams, buckets), 45)
    k_c, k_s = rng.binomial(n_c, 0.12), rng.binomial(n_s, 0.12)
    rate = float(stream_alarms(n_c, k_c, n_s, k_s, alpha).mean())
    assert rate <= three_se(alpha, streams)


@pytest.mark.slow
def test_false_alarm_rate_time_varying_splits_and_rates() -> None:
    """Unequal, drifting canary weights and a base rate moving over time, the same for both versions."""
    rng = np.random.default_rng(99)
    streams, buckets, alpha = 2000, 150, 0.05
    total = rng.poisson(20, (streams, buckets))
    drift = np.linspace(0.2, 1.5, buckets)[None, :]
    weight = np.clip(rng.uniform(0.02, 0.5, (streams, 1)) * drift, 0.01, 0.9)
    n_c = rng.binomial(total, weight)
    n_s = total - n_c
    p = 0.05 + 0.4 * np.sin(np.arange(buckets) / 12.0)[None, :] ** 2  # an upstream incident, periodically
    k_c, k_s = rng.binomial(n_c, p), rng.binomial(n_s, p)
    rate = float(stream_alarms(n_c, k_c, n_s, k_s, alpha).mean())
    assert rate <= three_se(alpha, streams)


def test_false_alarm_rate_decrease_direction() -> None:
    rng = np.random.default_rng(5)
    streams, buckets, alpha = 2000, 100, 0.05
    n_c = rng.integers(1, 15, (streams, buckets))
    n_s = rng.integers(10, 40, (streams, buckets))
    k_c, k_s = rng.binomial(n_c, 0.6), rng.binomial(n_s, 0.6)
    rate = float(stream_alarms(n_c, k_c, n_s, k_s, alpha, "decrease").mean())
    assert rate <= three_se(alpha, streams)


def test_power_against_a_tripled_rate() -> None:
    """0.12 -> 0.36 on the canary: alarms in at least 95% of streams within 30 buckets (150 canary trials)."""
    rng = np.random.default_rng(3)
    streams, buckets = 1000, 30
    n_c = np.full((streams, buckets), 5)
    n_s = np.full((streams, buckets), 45)
    k_c, k_s = rng.binomial(n_c, 0.36), rng.binomial(n_s, 0.12)
    assert float(stream_alarms(n_c, k_c, n_s, k_s, 0.05).mean()) >= 0.95


def test_power_decrease_and_one_sidedness() -> None:
    """A drop from 0.6 to 0.3 alarms a decrease test, and an increase test stays at its level."""
    rng = np.random.default_rng(4)
    streams, buckets, alpha = 1000, 40, 0.05
    n_c = np.full((streams, buckets), 5)
    n_s = np.full((streams, buckets), 45)
    k_c, k_s = rng.binomial(n_c, 0.3), rng.binomial(n_s, 0.6)
    assert float(stream_alarms(n_c, k_c, n_s, k_s, alpha, "decrease").mean()) >= 0.95
    assert float(stream_alarms(n_c, k_c, n_s, k_s, alpha, "increase").mean()) <= three_se(alpha, streams)


# --- MixtureFisherTest with fresh starts (change_every) ---------------------------------------------------
def stream_first_alarms(n_c: Counts, k_c: Counts, n_s: Counts, k_s: Counts, alpha: float,
                        every: int) -> NDArray[np.int64]:
    """The bucket of each stream's first alarm (-1: none) of the test with a fresh start every ``every``
    buckets, computed vectorised over streams with :func:`start_log_weight`."""
    grid = default_log_psi()
    streams, buckets = n_c.shape
    inc = fisher_log_lr(n_c.ravel(), k_c.ravel(), n_s.ravel(), k_s.ravel(), grid).reshape(streams, buckets, -1)
    log_s = np.full((streams, grid.size), start_log_weight(0, every))
    first = np.full(streams, -1)
    for b in range(buckets):
        if every and b and b % every == 0:
            log_s = np.logaddexp(log_s, start_log_weight(b // every, every))
        log_s = log_s + inc[:, b]
        hit = (logsumexp(log_s, axis=1) - math.log(grid.size) >= math.log(1.0 / alpha)) & (first < 0)
        first[hit] = b
    return first


def test_fresh_starts_vectorised_statistic_is_the_test_statistic() -> None:
    rng = np.random.default_rng(8)
    n_c, n_s = rng.integers(0, 8, (6, 300)), rng.integers(5, 40, (6, 300))
    p = np.where(np.arange(300) < 150, 0.12, 0.3)[None, :]
    k_c, k_s = rng.binomial(n_c, p), rng.binomial(n_s, 0.12)
    first = stream_first_alarms(n_c, k_c, n_s, k_s, 0.05, 20)
    assert (first >= 0).any()
    for i in range(6):
        t = MixtureFisherTest(alpha=0.05, change_every=20)
        got = [j for j, row in enumerate(zip(n_c[i], k_c[i], n_s[i], k_s[i], strict=True))
               if not t.alarm and t.update(*row)]
        assert got == ([int(first[i])] if first[i] >= 0 else [])


def test_start_weights_sum_to_one() -> None:
    """The prior over the starts is a probability: the mixture starts as a martingale of mean one."""
    weights = [math.exp(start_log_weight(m, 60)) for m in range(200_000)]
    assert math.fsum(weights) == pytest.approx(1.0, abs=1e-5)  # the tail beyond is 1 / (2 * 200000)
    assert math.fsum(weights) < 1.0
    assert start_log_weight(0, 0) == 0.0 and start_log_weight(1, 0) == -math.inf


@pytest.mark.slow
@pytest.mark.parametrize("every", [1, 10])
def test_fresh_starts_keep_the_false_alarm_rate_over_a_long_watch(every: int) -> None:
    """1000 null streams x 1000 buckets (100 or 1000 fresh starts), with an upstream incident on both arms
    and a drifting canary share: the rate of streams that ever alarm stays within alpha."""
    rng = np.random.default_rng(77)
    streams, buckets, alpha = 1000, 1000, 0.1
    total = rng.poisson(12, (streams, buckets))
    weight = np.clip(rng.uniform(0.05, 0.3, (streams, 1)) * np.linspace(0.5, 1.5, buckets)[None, :], 0.01, 0.9)
    n_c = rng.binomial(total, weight)
    n_s = total - n_c
    p = 0.1 + 0.3 * (np.sin(np.arange(buckets) / 40.0)[None, :] ** 8)
    k_c, k_s = rng.binomial(n_c, p), rng.binomial(n_s, p)
    rate = float((stream_first_alarms(n_c, k_c, n_s, k_s, alpha, every) >= 0).mean())
    assert rate <= three_se(alpha, streams)


@pytest.mark.slow
def test_fresh_starts_catch_a_late_harm_sooner_and_an_early_one_nearly_as_soon() -> None:
    """An hour of health then a tripled rate: the fresh starts (every 60 buckets) judge it on what came after
    it began; the plain mixture first makes up for the healthy hour. From the start, the fresh starts cost
    only their half weight (log 2 nats)."""
    rng = np.random.default_rng(12)
    streams, healthy, harmful = 400, 3600, 900
    buckets = healthy + harmful
    n_c, n_s = np.full((streams, buckets), 1), np.full((streams, buckets), 9)
    p = np.where(np.arange(buckets) < healthy, 0.12, 0.36)[None, :]
    k_c, k_s = rng.binomial(n_c, p), rng.binomial(n_s, 0.12)
    plain = stream_first_alarms(n_c, k_c, n_s, k_s, 0.01, 0)
    fresh = stream_first_alarms(n_c, k_c, n_s, k_s, 0.01, 60)
    for first in (plain, fresh):  # a false alarm in the healthy hour is possible, at most alpha of the time
        assert float(((first >= 0) & (first < healthy)).mean()) <= three_se(0.01, streams)

    def median_delay(first: NDArray[np.int64]) -> float:
        return float(np.median(np.where(first >= 0, first - healthy, np.inf)))

    assert median_delay(fresh) < 0.5 * median_delay(plain)
    early = np.where(np.arange(harmful) < 0, 0.12, 0.36)[None, :]
    k_c0, k_s0 = rng.binomial(n_c[:, :harmful], early), rng.binomial(n_s[:, :harmful], 0.12)
    plain0 = stream_first_alarms(n_c[:, :harmful], k_c0, n_s[:, :harmful], k_s0, 0.01, 0)
    fresh0 = stream_first_alarms(n_c[:, :harmful], k_c0, n_s[:, :harmful], k_s0, 0.01, 60)
    assert (plain0 >= 0).all() and (fresh0 >= 0).all()
    assert np.median(fresh0) <= 1.25 * np.median(plain0) + 5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), tables()), min_size=3, max_size=3), max_size=12),
       st.integers(0, 4))
def test_add_each_is_add_on_each_test(steps: list[list[Table | None]], every: int) -> None:
    """With and without fresh starts (``every`` 0): the vectorised add, one add each, and updates agree."""
    grid = default_log_psi()
    one = [MixtureFisherTest(change_every=every) for _ in range(3)]
    each = [MixtureFisherTest(change_every=every) for _ in range(3)]
    updated = [MixtureFisherTest(change_every=every) for _ in range(3)]
    for row in steps:
        live = [i for i, table in enumerate(row) if table is not None]
        tabs = [row[i] for i in live]
        lr = fisher_log_lr(*columns(tabs), grid)  # type: ignore[arg-type]
        for i, j in enumerate(live):
            one[j].add(lr[i], *tabs[i])  # type: ignore[misc]
            updated[j].update(*tabs[i])  # type: ignore[misc]
        MixtureFisherTest.add_each([each[j] for j in live], lr, np.asarray(tabs, dtype=np.int64).reshape(-1, 4))
    for a, b, c in zip(one, each, updated, strict=True):
        assert a.to_state() == b.to_state() and a.alarm == b.alarm == c.alarm and a.n == b.n == c.n
        assert c.statistic == pytest.approx(a.statistic, rel=1e-9, abs=1e-9)


# --- AlphaBudget ----------------------------------------------------------------------------------------
@settings(max_examples=150)
@given(st.floats(1e-6, 0.999), st.integers(0, 12), st.one_of(st.just(0.0), st.floats(0.01, 0.99)),
       st.integers(0, 80))
def test_budget_never_exceeds_alpha(alpha: float, known: int, reserve: float, discovered: int) -> None:
    if known == 0 and reserve == 0.0:
        reserve = 0.5
    names = [f"k{i}" for i in range(known)]
    budget = AlphaBudget(alpha, known=names, reserve=reserve)
    levels = [budget.level(n) for n in names] + [budget.level(f"new{i}") for i in range(discovered)]
    assert all(level > 0 or (reserve == 0 and i >= known) for i, level in enumerate(levels))
    assert math.fsum(levels) <= alpha * (1 + 1e-12)


def test_known_tests_share_the_unreserved_budget_equally() -> None:
    budget = AlphaBudget(0.05, known=["a", "b", "c", "d"], reserve=0.2)
    levels = [budget.level(n) for n in "abcd"]
    assert len(set(levels)) == 1
    assert math.fsum(levels) == pytest.approx(0.04)


def test_discovered_tests_draw_halving_shares_of_the_reserve() -> None:
    budget = AlphaBudget(0.1, known=["a"], reserve=0.5)
    first, second, third = (budget.level(n) for n in ("x", "y", "z"))
    assert first == pytest.approx(0.025)  # half of the reserve 0.1 * 0.5
    assert second == pytest.approx(first / 2) and third == pytest.approx(first / 4)


def test_asking_again_does_not_spend_more() -> None:
    budget = AlphaBudget(0.01, known=["a"], reserve=0.2)
    x = budget.level("x")
    assert budget.level("x") == x and budget.level("a") == budget.level("a")
    assert budget.level("y") == pytest.approx(x / 2)  # "x" was allotted once only


def test_without_known_tests_the_whole_budget_is_reserve() -> None:
    budget = AlphaBudget(0.02)
    levels = [budget.level(f"t{i}") for i in range(60)]
    assert levels[0] == pytest.approx(0.01)
    assert math.fsum(levels) == pytest.approx(0.02, rel=1e-12)
    assert math.fsum(levels) <= 0.02


def test_zero_reserve_gives_the_whole_budget_to_known_tests() -> None:
    budget = AlphaBudget(0.03, known=["a", "b", "c"], reserve=0.0)
    assert [budget.level(n) for n in "abc"] == [pytest.approx(0.01)] * 3


@pytest.mark.parametrize(("alpha", "known", "reserve", "match"), [
    (0.0, ["a"], 0.2, "alpha"), (1.0, ["a"], 0.2, "alpha"), (-0.5, ["a"], 0.2, "alpha"),
    (0.01, ["a"], 1.0, "reserve"), (0.01, ["a"], -0.1, "reserve"), (0.01, [], 0.0, "reserve"),
])
def test_budget_validation(alpha: float, known: list[str], reserve: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AlphaBudget(alpha, known=known, reserve=reserve)


@pytest.mark.parametrize("known", [["a", "b"], []])
def test_budget_state_round_trip(known: list[str]) -> None:
    budget = AlphaBudget(0.05, known=known, reserve=0.3)
    for n in ("x", "y"):
        budget.level(n)
    restored = AlphaBudget.from_state(json.loads(json.dumps(budget.to_state())))
    for n in [*known, "x", "y", "z"]:  # "z" is new to both: it must get the same next share
        assert restored.level(n) == budget.level(n)


# --- SegmentBudget --------------------------------------------------------------------------------------
@settings(max_examples=150)
@given(st.floats(1e-6, 0.999), st.integers(1, 8), st.one_of(st.just(0.0), st.floats(0.01, 0.99)),
       st.dictionaries(st.sampled_from(["channel", "tenant", "region"]), st.integers(1, 30), min_size=1),
       st.integers(0, 6), st.data())
def test_segment_budget_never_exceeds_alpha(alpha: float, known: int, reserve: float, slots: dict[str, int],
                                            discovered: int, data: st.DataObject) -> None:
    """Every slot of every family, known and discovered, in any order of discovery: at most alpha."""
    names = [f"k{i}" for i in range(known)] + [f"new{i}" for i in range(discovered)]
    budget = SegmentBudget(alpha, known=names[:known], slots=slots, reserve=reserve)
    cells = [(t, d, f"v{i}") for t in names for d, k in slots.items() for i in range(k)]
    for t, d, v in data.draw(st.permutations(cells)):
        assert budget.level(t, d, v) >= 0
    assert budget.spent <= alpha * (1 + 1e-12)
    for t in names:
        for d in slots:
            with pytest.raises(ValueError, match="pool the rest"):
                budget.level(t, d, "one-too-many")


def test_segment_budget_shares_within_a_family() -> None:
    budget = SegmentBudget(0.02, known=["a", "b"], slots={"tenant": 4, "channel": 2}, reserve=0.0)
    family = 0.02 / 4  # two known tests, two dimensions
    levels = [budget.level("a", "tenant", v) for v in ("acme", "globex", "initech", "hooli")]
    assert levels == pytest.approx([family * (1 / 8 + 2.0 ** -(i + 2)) for i in range(4)])
    assert levels == sorted(levels, reverse=True) and min(levels) >= family / 8
    assert math.fsum(levels) < family
    # the order is per family: globex is the first value of b's tenant family
    assert budget.level("b", "tenant", "globex") == levels[0]
    assert budget.level("a", "tenant", "acme") == levels[0]  # asking again spends nothing
    with pytest.raises(ValueError, match="unknown dimension"):
        budget.level("a", "region", "eu")


def test_segment_budget_discovered_tests_draw_from_the_reserve() -> None:
    budget = SegmentBudget(0.1, known=["a"], slots={"tenant": 1}, reserve=0.5)
    assert budget.level("a", "tenant", "x") == pytest.approx(0.05 * 0.75)  # 1/(2*1) + 1/4 of its family
    first, second = budget.level("new", "tenant", "x"), budget.level("newer", "tenant", "x")
    assert first == pytest.approx(0.1 * 0.5 / 2 * 0.75) and second == pytest.approx(first / 2)


def test_segment_budget_state_round_trip() -> None:
    budget = SegmentBudget(0.05, known=["a", "b\x1fodd"], slots={"tenant": 3, "channel": 2})
    for t, d, v in [("a", "tenant", "x"), ("new", "channel", "voice"), ("b\x1fodd", "tenant", "y"),
                    ("a", "tenant", "z")]:
        budget.level(t, d, v)
    restored = SegmentBudget.from_state(json.loads(json.dumps(budget.to_state())))
    assert restored.to_state() == budget.to_state() and restored.spent == budget.spent
    for t, d, v in [("a", "tenant", "x"), ("a", "tenant", "w"), ("newest", "tenant", "q"),
                    ("b\x1fodd", "channel", "e")]:
        assert restored.level(t, d, v) == budget.level(t, d, v)


@pytest.mark.parametrize(("slots", "match"), [({}, "at least one"), ({"tenant": 0}, "tenant"),
                                              ({"tenant": 2.5}, "tenant"), ({"tenant": True}, "tenant")])
def test_segment_budget_validation(slots: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SegmentBudget(0.01, known=["a"], slots=slots)
