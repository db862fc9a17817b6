"""BOCPD: the run-length posterior against a plain implementation of Adams & MacKay, the truncation, the one
kernel of update and update_many, the calibrated ARL, invariance and detection of mean and variance changes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from detectors.change.bocpd import ALPHA0, BETA0, BOCPD, CALIBRATION, KAPPA0, threshold_for_arl
from tests.support.detectors import first_alarm_times


def reference_posteriors(zs: np.ndarray, hazard: float) -> list[np.ndarray]:
    """Exact, untruncated BOCPD, written out plainly: ``out[t][n - 1] = P(the run holds n observations)``."""

    def updated(p: tuple[float, float, float, float], x: float) -> tuple[float, float, float, float]:
        mu, kappa, alpha, beta = p
        return ((kappa * mu + x) / (kappa + 1), kappa + 1, alpha + 0.5,
                beta + kappa * (x - mu) ** 2 / (2 * (kappa + 1)))

    def density(p: tuple[float, float, float, float], x: float) -> float:
        mu, kappa, alpha, beta = p
        return float(stats.t.pdf(x, df=2 * alpha, loc=mu, scale=math.sqrt(beta * (kappa + 1) / (alpha * kappa))))

    prior = (0.0, KAPPA0, ALPHA0, BETA0)
    runs = [updated(prior, zs[0])]
    probs = np.array([1.0])
    out = [probs]
    for x in zs[1:]:
        grow = probs * np.array([density(p, x) for p in runs]) * (1 - hazard)
        new = np.concatenate([[hazard * density(prior, x)], grow])
        probs = new / new.sum()
        runs = [updated(prior, x)] + [updated(p, x) for p in runs]
        out.append(probs)
    return out


def test_posterior_equals_the_plain_recursion() -> None:
    rng = np.random.default_rng(4)
    xs = np.concatenate([rng.normal(5, 2, 60), rng.normal(9, 1, 40)])
    det = BOCPD(max_run_length=150, warmup=20, window=5, expected_run_length=50, threshold=0.999999)
    zs = None
    for t, x in enumerate(xs):
        det.update(float(x))
        if t + 1 < det.warmup:
            continue
        if zs is None:
            zs = (xs - det._loc) / det._scale
            ref = reference_posteriors(zs, 1 / 50)
        post = det._posterior()
        assert post is not None
        np.testing.assert_allclose(post[:t + 1], ref[t], rtol=1e-9, atol=1e-14)
        assert post[t + 1:].sum() == 0.0
        assert det.statistic == pytest.approx(ref[t][:det.window].sum(), rel=1e-9)


def test_truncation_folds_the_mass_into_the_last_run_length() -> None:
    rng = np.random.default_rng(5)
    xs = rng.normal(0, 1, 400)
    small, big = BOCPD(max_run_length=30, threshold=0.999999), BOCPD(max_run_length=399, threshold=0.999999)
    diffs = []
    for x in xs:
        small.update(float(x))
        big.update(float(x))
        if small._posterior() is not None:
            diffs.append(abs(small.statistic - big.statistic))
    p_small, p_big = small._posterior(), big._posterior()
    assert p_small is not None and p_big is not None
    assert p_small.sum() == pytest.approx(1.0)
    # the last slot holds the long runs' mass: "30 or more" against the untruncated tail
    assert p_small[-1] == pytest.approx(p_big[29:].sum(), abs=0.05)
    assert p_small[-1] > 0.5
    assert max(diffs) < 0.05  # the alarm statistic hardly notices the truncation


def test_update_many_is_repeated_update_to_the_last_bit() -> None:
    """One kernel behind both: the same statistics and checkpoint, exactly, through the folding of the long
    runs (past 200), the rescaling of the weights, the re-basing of the running sums (every 1,024) and a
    restart, whatever the chunks."""
    rng = np.random.default_rng(12)
    xs = np.concatenate([rng.normal(3, 2, 2600), rng.normal(9, 2, 300)])
    one, many = BOCPD(arl=1e6), BOCPD(arl=1e6)
    stats, expected = [], []
    for i, x in enumerate(xs):
        if one.update(float(x)):
            expected.append(i)
        stats.append(one.statistic)
    assert expected and expected[0] >= 2600
    got: list[int] = []
    a = 0
    for b in [*np.cumsum(rng.integers(1, 300, 40)).tolist(), len(xs)]:
        b = min(b, len(xs))
        if b > a:
            got += [a + int(j) for j in many.update_many(xs[a:b])]
            assert many.statistic == stats[b - 1]
            a = b
    assert got == expected
    assert json.dumps(many.to_state()) == json.dumps(one.to_state())


def first_alarms(streams: list[np.ndarray], arl: float) -> np.ndarray:
    return first_alarm_times(lambda: BOCPD(arl=arl), streams, block=200)


def test_arl_on_normal_streams_is_the_target() -> None:
    rng = np.random.default_rng(2026)
    streams = [rng.normal(rng.uniform(-100, 100), rng.uniform(0.01, 100), 3000) for _ in range(200)]
    t = first_alarms(streams, 300.0)
    assert (t > 3000).mean() < 0.02
    assert 240 < t.mean() < 375, t.mean()  # ~exponential: standard error ~ 300 / sqrt(200) = 21


def test_affine_invariance() -> None:
    rng = np.random.default_rng(8)
    xs = np.concatenate([rng.normal(0, 1, 300), rng.normal(2.5, 1, 100), rng.normal(2.5, 4, 200)])
    base = [int(i) for i in BOCPD(arl=1000).update_many(xs)]
    assert base
    assert [int(i) for i in BOCPD(arl=1000).update_many(250.0 + 8.0 * xs)] == base


@pytest.mark.parametrize(("after", "within"), [((3.0, 1.0), 8), ((-2.0, 1.0), 15), ((0.0, 6.0), 15)])
def test_detects_changes_of_mean_and_variance(after: tuple[float, float], within: int) -> None:
    hits = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        xs = np.concatenate([rng.normal(10, 1, 300), rng.normal(10 + after[0], after[1], 100)])
        alarms = BOCPD().update_many(xs)
        hits += any(300 <= a < 300 + within for a in alarms) and not any(a < 300 for a in alarms)
    assert hits >= 17


def test_threshold_table() -> None:
    arls = [a for a, _ in CALIBRATION]
    assert arls == sorted(arls) and [y for _, y in CALIBRATION] == sorted(y for _, y in CALIBRATION)
    for a, y in CALIBRATION:
        assert threshold_for_arl(a) == pytest.approx(1 / (1 + math.exp(-y)))
    assert 0 < threshold_for_arl(150) < threshold_for_arl(10_000) < threshold_for_arl(1e7) < 1
    assert BOCPD(arl=5000).threshold == pytest.approx(threshold_for_arl(5000))
    assert BOCPD(threshold=0.9).threshold == 0.9


def test_no_alarm_during_the_warmup_and_a_restart_after_an_alarm() -> None:
    rng = np.random.default_rng(6)
    xs = np.concatenate([rng.normal(0, 1, 100), rng.normal(20, 1, 100)])
    det = BOCPD(warmup=30)
    alarms = [int(i) for i in det.update_many(xs)]
    assert alarms[0] == 100
    # the restart: the next 30 observations are a fresh warm-up, standardized afresh
    assert all(not 100 < a <= 130 for a in alarms)
    assert det.n == len(xs) - 1 - alarms[-1] and det.n >= 30 and len(alarms) == 1
    assert det._loc == pytest.approx(20, abs=1)


def test_huge_values_after_a_flat_stretch_stay_finite() -> None:
    # a flat warm-up gives a tiny scale, so later values are enormous once standardised: differences of
    # running sums cancel there, and must not turn into log(0) (warnings are errors in the tests)
    xs = np.concatenate([np.full(300, 5.0), [5.0 + 1e9], np.full(50, 5.0), np.linspace(0, 1e12, 400)])
    det, one = BOCPD(), BOCPD()
    alarms = det.update_many(xs)
    assert len(alarms) >= 1 and np.isfinite(det.statistic)
    assert [i for i, x in enumerate(xs) if one.update(float(x))] == alarms.tolist()
