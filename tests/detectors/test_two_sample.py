"""Tests of the per-observation two-sample tests: Bernoulli, Poisson rate, quantile exceedance (real and
ordinal) and categorical.

Calibration: thousands of simulated null streams per test, run at once by ``run_streams`` (vectorised over
streams and observations), with a canary share and a base law that both move over time (slow waves and a
step at a random time, hitting both arms alike). Ville's inequality bounds the probability of ever alarming
by ``alpha``; the empirical rate must stay under ``alpha`` plus three binomial standard errors (``alpha =
0.05`` so the check has power against a broken martingale). Power and delay: stated shifts at a 10% canary
share and the default ``alpha = 0.01``; delays are counted in canary observations. The scenarios are also
those of ``benchmarks/calibration_two_sample.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from detectors import (
    AlphaBudget,
    BernoulliTest,
    CategoricalTest,
    OrdinalExceedanceTest,
    PoissonRateTest,
    QuantileExceedanceTest,
)
from detectors.base import TwoSampleTest, from_state
from tests.support.two_sample import (
    NAMES,
    SHIFTS,
    TAU,
    delays,
    make,
    null_streams,
    shifted_streams,
    three_se,
    varying_share,
)

# -- calibration ---------------------------------------------------------------------------------------------
NULL_STREAMS, NULL_LENGTH = 2000, 4000


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_false_alarm_rate_on_time_varying_null_streams(name: str) -> None:
    alpha = 0.05
    x, lab = null_streams(name, np.random.default_rng(11), NULL_STREAMS, NULL_LENGTH)
    first, top = make(name, alpha=alpha).run_streams(x, lab)
    rate = float(np.mean(first >= 0))
    assert np.array_equal(first >= 0, top >= math.log(1.0 / alpha))
    assert rate <= three_se(alpha, NULL_STREAMS), f"{name}: false-alarm rate {rate:.4f} at alpha {alpha}"


def test_poisson_rate_test_is_calibrated_where_rates_differ_between_streams_and_blocks() -> None:
    # strong rate swings within a stream (x10 over a few hundred observations) still hit both arms alike
    rng = np.random.default_rng(12)
    streams, n = 2000, 3000
    t = np.arange(n)[None, :]
    lam = np.exp(1.2 * np.sin(TAU * t / rng.uniform(200, 600, (streams, 1))))
    lab = varying_share(rng, streams, n)
    first, _ = PoissonRateTest(alpha=0.05, block=1).run_streams(rng.poisson(lam), lab)
    assert float(np.mean(first >= 0)) <= three_se(0.05, streams)


# -- power and delay ---------------------------------------------------------------------------------------
POWER_STREAMS, POWER_LENGTH = 200, 15_000  # 1,500 canary observations per stream at a 10% share
MAX_MEDIAN_DELAY = {"bernoulli": 250, "poisson_rate": 450, "quantile_exceedance": 120, "ordinal_exceedance": 750,
                    "categorical": 600}


@pytest.mark.parametrize("name", NAMES)
def test_power_and_delay_on_the_stated_shift(name: str) -> None:
    x, lab = shifted_streams(name, np.random.default_rng(21), POWER_STREAMS, POWER_LENGTH)
    first, _ = make(name, alpha=0.01).run_streams(x, lab)
    power = float(np.mean(first >= 0))
    d = delays(first, lab)
    print(f"\n{name} ({SHIFTS[name]}, 10% canary, alpha 0.01): power {power:.3f}, "
          f"delay in canary observations: median {np.nanmedian(d):.0f}, 90th percentile {np.nanquantile(d, 0.9):.0f}")
    assert power >= 0.95
    assert np.nanmedian(d) <= MAX_MEDIAN_DELAY[name]


def test_the_harmless_direction_does_not_alarm() -> None:
    rng = np.random.default_rng(22)
    shape = (200, 10_000)
    lab = rng.random(shape) < 0.2
    better = (rng.random(shape) < np.where(lab, 0.06, 0.12)).astype(np.float64)  # the canary escalates less
    assert not np.any(BernoulliTest(alpha=0.05).run_streams(better, lab)[0] >= 0)
    assert np.mean(BernoulliTest(alpha=0.05, direction="decrease").run_streams(better, lab)[0] >= 0) > 0.95
    faster = rng.lognormal(0.0, 0.6, shape) * np.where(lab, 0.7, 1.0)
    assert not np.any(QuantileExceedanceTest(alpha=0.05).run_streams(faster, lab)[0] >= 0)
    assert np.mean(QuantileExceedanceTest(alpha=0.05, direction="decrease").run_streams(faster, lab)[0] >= 0) > 0.95


# -- the fast path is the detector -------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_run_streams_is_repeated_update(name: str) -> None:
    x, lab = shifted_streams(name, np.random.default_rng(31), 2, 1500, share=0.3)
    first, top = make(name, alpha=0.01).run_streams(x, lab)
    for row in range(2):
        det = make(name, alpha=0.01)
        raised = -1
        for i in range(x.shape[1]):
            if det.update(float(x[row, i]), bool(lab[row, i])) and raised < 0:
                raised = i
        assert raised == first[row]
        assert det.p_value == pytest.approx(math.exp(-top[row]), rel=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_long_arrays_in_any_pieces_give_the_same_state(name: str) -> None:
    x, lab = null_streams(name, np.random.default_rng(32), 1, 6000)
    whole, pieces = make(name), make(name)
    whole.update_many(x[0], lab[0])
    cuts = np.sort(np.random.default_rng(33).integers(0, 6000, 12))
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, 6000], strict=True):
        pieces.update_many(x[0, a:b], lab[0, a:b])
    resumed = from_state(json.loads(json.dumps(pieces.to_state())))
    for det in (pieces, resumed):
        assert json.dumps(det.to_state()["params"]) == json.dumps(whole.to_state()["params"])
        assert det.statistic == pytest.approx(whole.statistic, rel=1e-9, abs=1e-9)
        assert det.p_value == pytest.approx(whole.p_value, rel=1e-9)
        assert det.counts == whole.counts == (int(lab.sum()), int((~lab).sum()))


# -- the contract: sticky alarm, p-value, validation -----------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_the_alarm_is_sticky_and_the_p_value_anytime_valid(name: str) -> None:
    rng = np.random.default_rng(41)
    x, lab = shifted_streams(name, rng, 1, 20_000, share=0.2)
    det: TwoSampleTest = make(name, alpha=0.01)
    p_values, alarms, stats = [], [], []
    for chunk in np.array_split(np.arange(20_000), 40):
        alarms.append(det.update_many(x[0, chunk], lab[0, chunk]))
        p_values.append(det.p_value)
        stats.append(det.statistic)
    assert alarms[-1] and det.alarm
    k = alarms.index(True)
    assert all(alarms[k:])
    assert all(a >= b for a, b in zip(p_values, p_values[1:], strict=False))  # min over a growing watch
    assert all((p <= 0.01) == a for p, a in zip(p_values, alarms, strict=True))
    assert p_values[-1] <= math.exp(-max(stats))  # the running maximum sees every block, not just these looks
    assert det.threshold == pytest.approx(math.log(100.0))
    # null evidence afterwards pulls the statistic down, never the alarm
    y, lab2 = null_streams(name, rng, 1, 40_000)
    det.update_many(y[0], lab2[0])
    assert det.alarm and det.p_value <= p_values[-1] and det.statistic < max(stats)
    det.reset()
    assert not det.alarm and det.p_value == 1.0 and det.statistic == 0.0


def test_a_fresh_detector_has_p_value_one() -> None:
    for name in NAMES:
        det = make(name)
        assert det.p_value == 1.0 and det.statistic == 0.0 and not det.alarm
        assert not det.update_many([], [])


BAD_VALUES: dict[str, list[float]] = {
    "bernoulli": [0.5, 2.0, -1.0, math.nan],
    "poisson_rate": [-1.0, 1.5, math.inf, math.nan],
    "quantile_exceedance": [math.nan, math.inf, -math.inf],
    "ordinal_exceedance": [2.5, math.nan, 1e300],
    "categorical": [1.5, -0.5, math.nan],
}


@pytest.mark.parametrize("name", NAMES)
def test_observations_and_arguments_are_validated(name: str) -> None:
    det = make(name)
    for bad in BAD_VALUES[name]:
        with pytest.raises(ValueError, match="xs"):
            det.update(bad, True)
    with pytest.raises(ValueError, match="same length"):
        det.update_many([1.0, 1.0], [True])
    with pytest.raises(ValueError, match="same shape"):
        det.run_streams(np.ones((2, 3)), np.ones((2, 4), bool))
    assert det.counts == (0, 0)  # a refused call changes nothing


@pytest.mark.parametrize(("cls", "kwargs", "param"), [
    (BernoulliTest, {"alpha": 0.0}, "alpha"), (BernoulliTest, {"alpha": 1.0}, "alpha"),
    (BernoulliTest, {"direction": "higher"}, "direction"), (BernoulliTest, {"block": 0}, "block"),
    (BernoulliTest, {"block": True}, "block"), (PoissonRateTest, {"alpha": math.nan}, "alpha"),
    (PoissonRateTest, {"block": 1.5}, "block"), (QuantileExceedanceTest, {"quantiles": [0.5, 0.5]}, "quantiles"),
    (QuantileExceedanceTest, {"quantiles": "p90"}, "quantiles"), (QuantileExceedanceTest, {"min_history": 0},
                                                                  "min_history"),
    (QuantileExceedanceTest, {"relative_accuracy": 0.5}, "relative_accuracy"),
    (OrdinalExceedanceTest, {"quantiles": [1.1]}, "quantiles"), (CategoricalTest, {"categories": [1, 1]}, "categories"),
    (CategoricalTest, {"categories": ["a"]}, "categories"), (CategoricalTest, {"reserve": -0.1}, "reserve"),
])
def test_invalid_parameters_name_the_parameter(cls: Callable[..., Any], kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(ValueError, match=param):
        cls(**kwargs)


# -- test-specific properties ----------------------------------------------------------------------------------
def test_blocks_depend_on_labels_only() -> None:
    rng = np.random.default_rng(51)
    lab = rng.random(3000) < 0.15
    a, b = BernoulliTest(block=3), BernoulliTest(block=3)
    a.update_many(rng.random(3000) < 0.1, lab)
    b.update_many(rng.random(3000) < 0.9, lab)
    sa, sb = a.to_state()["vars"], b.to_state()["vars"]
    assert (sa["n_canary"], sa["n_baseline"]) == (sb["n_canary"], sb["n_baseline"])
    assert [row[0] for row in sa["pending"]] == [row[0] for row in sb["pending"]]  # the open block's size


def test_exceedance_thresholds_come_from_the_baseline_history_only() -> None:
    rng = np.random.default_rng(52)
    lab = rng.random(5000) < 0.3
    x = np.where(lab, 1e6, rng.lognormal(0.0, 0.5, 5000))  # absurd canary values
    det = QuantileExceedanceTest(min_history=20)
    det.update_many(x, lab)
    assert det.history_size == int((~lab).sum())
    thresholds = det.thresholds
    assert thresholds is not None and max(thresholds) < 10.0
    assert det.alarm


def test_exceedance_ties_never_count() -> None:
    # baseline scores 1-3, canary always the baseline's median: a non-strict comparison would alarm at once
    rng = np.random.default_rng(53)
    lab = rng.random(20_000) < 0.3
    x = np.where(lab, 2.0, rng.integers(1, 4, 20_000))
    assert not OrdinalExceedanceTest(direction="increase", alpha=0.05).update_many(x, lab)
    assert not OrdinalExceedanceTest(direction="decrease", alpha=0.05).update_many(x, lab)
    assert not QuantileExceedanceTest(alpha=0.05).update_many(x, lab)


def test_exceedance_history_is_bounded() -> None:
    rng = np.random.default_rng(54)
    det = QuantileExceedanceTest()
    n = 200_000
    x = np.exp(rng.uniform(-40.0, 40.0, n)) * rng.choice([-1.0, 1.0], n)  # magnitudes 1e-17 to 1e17
    det.update_many(x, rng.random(n) < 0.1)
    bins = len(det.to_state()["vars"]["keys"])
    bound = 2 * math.ceil(math.log(1e21) / math.log(1.01 / 0.99)) + 1
    assert bins <= bound
    det.update_many(x[::-1], rng.random(n) < 0.1)
    assert len(det.to_state()["vars"]["keys"]) <= bound
    assert len(json.dumps(det.to_state())) < 200_000


def test_categorical_levels_never_exceed_alpha_however_many_categories_appear() -> None:
    rng = np.random.default_rng(55)
    det = CategoricalTest(alpha=0.01, categories=[0, 1, 2], reserve=0.2, block=1)
    n = 10_000
    det.update_many(rng.integers(0, 300, n), rng.random(n) < 0.3)
    levels = det.levels
    assert len(levels) == 300 and sum(levels.values()) <= 0.01
    assert levels[0] == levels[1] == levels[2] == pytest.approx(0.01 * 0.8 / 3)
    budget = AlphaBudget(0.01, known=["0", "1", "2"], reserve=0.2)
    assert all(levels[c] == budget.level(str(c)) for c in [0, 1, 2])
    assert not det.alarm


def test_categorical_points_at_the_category_that_moved() -> None:
    rng = np.random.default_rng(56)
    x, lab = shifted_streams("categorical", rng, 1, 30_000)
    det = CategoricalTest(alpha=0.01, categories=[0, 1, 2, 3, 4])
    assert det.update_many(x[0], lab[0])
    stats = det.category_statistics()
    assert max(stats, key=lambda c: stats[c]) == 3
    assert stats[3] >= math.log(1.0 / det.levels[3])


def test_categorical_new_category_draws_its_level_only_when_its_block_closes() -> None:
    det = CategoricalTest(alpha=0.01, block=2)
    det.update(7.0, True)
    assert det.levels == {}
    for x, c in [(7.0, False), (7.0, True), (8.0, False)]:
        det.update(x, c)
    assert det.levels == {7: 0.005, 8: 0.0025}
