"""Tests of the single-stream change detectors: ``GaussianCUSUM``, ``BernoulliCUSUM`` (``detectors.cusum``) and
``PageHinkley`` (``detectors.page_hinkley``).

Calibration is checked by simulation, vectorized across streams with each detector's ``first_alarms`` (a
separate test checks that it is ``update_many``, row by row). Every in-control stream is cut at ``10 * arl``
observations, so the mean of ``min(run length, 10 * arl)`` is a *lower* bound of the ARL, and it is checked
against the target less three standard errors. With estimated parameters it is exactly the quantity the
thresholds are set for. Seeds are fixed: the tests are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from detectors import BernoulliCUSUM, GaussianCUSUM, PageHinkley
from detectors.base import from_state
from detectors.cusum import bernoulli_threshold, gaussian_arl, gaussian_threshold, siegmund_arl

Sampler = Callable[[np.random.Generator, tuple[int, int]], NDArray[np.float64]]
Detector = GaussianCUSUM | BernoulliCUSUM | PageHinkley
ARL = 500.0


def gaussian(mean: float = 0.0, sd: float = 1.0) -> Sampler:
    return lambda rng, shape: rng.normal(mean, sd, shape)


def bernoulli(p: float) -> Sampler:
    return lambda rng, shape: (rng.random(shape) < p).astype(np.float64)


def run_lengths(det: Detector, sample: Sampler, *, streams: int = 2000, horizon: int = int(10 * ARL),
                seed: int = 0) -> NDArray[np.int64]:
    """In-control run lengths of fresh detectors, each stream cut at ``horizon`` (a cut run counts as horizon)."""
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, streams, 250):
        first = det.first_alarms(sample(rng, (min(250, streams - start), horizon)))
        out.append(np.where(first < 0, horizon, first + 1))
    return np.concatenate(out)


def delays(det: Detector, before: Sampler, after: Sampler, change: int, *, streams: int = 2000, tail: int = 1000,
           seed: int = 1) -> NDArray[np.int64]:
    """Post-change observations seen at the first alarm, over streams without a false alarm before ``change``
    (a change still undetected after ``tail`` observations counts as ``tail``; they must be under 0.5 %)."""
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, streams, 500):
        rows = min(500, streams - start)
        x = np.concatenate([before(rng, (rows, change)), after(rng, (rows, tail))], axis=1)
        first = det.first_alarms(x)
        first = first[(first >= change) | (first < 0)]
        out.append(np.where(first < 0, tail, first - change + 1))
    d = np.concatenate(out)
    assert np.mean(d == tail) < 0.005, f"{np.mean(d == tail):.2%} of the changes went undetected"
    return d


def assert_calibrated(rl: NDArray[np.int64], arl: float = ARL) -> float:
    mean, se = float(rl.mean()), float(rl.std() / math.sqrt(rl.size))
    assert mean >= arl - 3 * se, f"mean run length {mean:.1f} +- {se:.1f} below the target {arl}"
    return mean


# -- calibration -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["up", "both"])
def test_gaussian_known_parameters_hit_the_target_arl_sharply(direction: str) -> None:
    det = GaussianCUSUM(direction=direction, mu=10.0, sigma=3.0, arl=ARL)
    mean = assert_calibrated(run_lengths(det, gaussian(10.0, 3.0)))
    # the exact integral-equation threshold is sharp: Lorden's log(arl) would give a mean run length ~5x larger
    assert mean <= 1.1 * ARL
    assert det.threshold < math.log((2 if direction == "both" else 1) * ARL)


@pytest.mark.parametrize("direction", ["up", "both"])
def test_gaussian_estimated_parameters_keep_the_mean_run_length(direction: str) -> None:
    det = GaussianCUSUM(direction=direction, arl=ARL)  # mu and sigma from a 30-observation warm-up
    rl = run_lengths(det, gaussian(-4.0, 0.5), seed=2)
    assert_calibrated(rl)
    assert np.all(rl > 30)  # no alarm during the warm-up


def test_estimated_thresholds_are_raised_for_the_estimation_error() -> None:
    known = GaussianCUSUM(direction="both", mu=0.0, sigma=1.0, arl=ARL, delta=0.5)
    estimated = GaussianCUSUM(direction="both", arl=ARL, delta=0.5)
    assert estimated.threshold > known.threshold + 2.0  # a misplaced mean shortens one side's runs
    assert_calibrated(run_lengths(estimated, gaussian(), seed=3))
    one_sided = GaussianCUSUM(direction="up", arl=ARL, delta=0.5)
    assert one_sided.threshold > GaussianCUSUM(direction="up", mu=0.0, sigma=1.0, arl=ARL, delta=0.5).threshold
    # the longer the warm-up, the closer to the known-parameter threshold
    longer = [GaussianCUSUM(direction="both", warmup=w, arl=ARL, delta=0.5).threshold for w in (30, 100, 300)]
    assert longer[0] > longer[1] > longer[2] > known.threshold
    assert PageHinkley(warmup=300, arl=ARL).threshold_nats < PageHinkley(arl=ARL).threshold_nats


def test_half_the_warmups_give_a_segment_with_the_target_arl() -> None:
    """The first criterion of the estimated threshold, checked directly: given a warm-up's estimates the
    segment is a CUSUM of i.i.d. Gaussian increments, whose exact ARL the integral equation gives."""
    det = GaussianCUSUM(direction="up", arl=ARL)
    rng = np.random.default_rng(9)
    warmups = rng.normal(0.0, 1.0, (201, 30))
    med = np.median(warmups, axis=1)
    scale = 1.482602218505602 * np.median(np.abs(warmups - med[:, None]), axis=1)
    h = det.threshold
    arls = [gaussian_arl(h, -m / s - 0.5, 1.0 / s) for m, s in zip(med, scale, strict=True)]
    assert np.median(arls) >= 0.9 * ARL  # (201 warm-ups: the median is known to about 10 %)


@pytest.mark.parametrize(("p0", "ratio"), [(0.2, 2.0), (0.05, 0.5)])
def test_bernoulli_known_rate_hits_the_target_arl(p0: float, ratio: float) -> None:
    det = BernoulliCUSUM(p0=p0, ratio=ratio, arl=ARL)
    mean = assert_calibrated(run_lengths(det, bernoulli(p0), seed=4))
    assert mean <= 1.15 * ARL  # the lattice bound is tight
    assert det.threshold < math.log(ARL) - 2.0  # far below Lorden's


def test_bernoulli_estimated_rate_keeps_the_mean_run_length() -> None:
    det = BernoulliCUSUM(ratio=2.0, arl=ARL)  # p0 from a 100-observation warm-up
    for p, seed in ((0.2, 5), (0.05, 6)):
        assert_calibrated(run_lengths(det, bernoulli(p), seed=seed))


@pytest.mark.parametrize("sigma", [None, 2.0])
def test_page_hinkley_hits_the_target_arl(sigma: float | None) -> None:
    det = PageHinkley(sigma=sigma, arl=ARL)
    rl = run_lengths(det, gaussian(50.0, 2.0), seed=7)  # the mean is never needed: any level will do
    mean = assert_calibrated(rl)
    if sigma is not None:
        assert mean <= 1.1 * ARL


# -- the threshold computations ----------------------------------------------------------------------------
def test_exact_gaussian_arl_and_siegmund() -> None:
    # the integral equation against a simulation of 10**6 runs (335.23 +- 0.33) for k = 0.5, h = 4
    assert gaussian_arl(4.0, -0.5, 1.0) == pytest.approx(335.4, abs=0.1)
    # Siegmund's approximation overstates the ARL, increasingly with the drift: thresholds from it fall short
    for delta in (1.0, 2.0, 4.0):
        h = gaussian_threshold(10_000.0, delta)
        assert gaussian_arl(h, -delta * delta / 2, delta) >= 10_000.0
        assert float(siegmund_arl(h, -delta * delta / 2, delta)) > 10_000.0
    assert gaussian_threshold(10_000.0, 1.0) < math.log(10_000.0)


def test_bernoulli_threshold_falls_back_to_lorden_for_tiny_rates() -> None:
    assert bernoulli_threshold(1e-5, 2e-5, 1000.0) == pytest.approx(math.log(1000.0))
    assert bernoulli_threshold(0.2, 0.4, 1000.0) < math.log(1000.0)


# -- power and delay -----------------------------------------------------------------------------------------
def cusum_delay_bound(h: float, delta: float) -> float:
    """The CUSUM delay approximation (h + 1.166 delta) / (delta**2 / 2) for a shift of exactly delta sigma from
    zero; a little above Siegmund's ARL1, and above the delay from any head start."""
    return (h + 1.166 * delta) / (delta * delta / 2.0)


@pytest.mark.parametrize(("direction", "shift"), [("up", 1.0), ("both", -1.0)])
def test_gaussian_detects_a_one_sigma_shift_quickly(direction: str, shift: float) -> None:
    det = GaussianCUSUM(direction=direction, mu=0.0, sigma=1.0, arl=ARL)
    d = delays(det, gaussian(), gaussian(shift), change=200)
    bound = cusum_delay_bound(det.threshold, 1.0)
    assert d.mean() <= bound
    assert float(siegmund_arl(det.threshold, 0.5, 1.0)) == pytest.approx(d.mean(), rel=0.15)


def test_gaussian_with_a_warmup_detects_a_one_sigma_shift() -> None:
    det = GaussianCUSUM(direction="both", arl=ARL)
    d = delays(det, gaussian(), gaussian(1.0), change=230)
    # the estimates' error costs some delay, the more so as the raised two-sided threshold; within 1.5x
    assert d.mean() <= 1.5 * cusum_delay_bound(det.threshold, 1.0)


def test_bernoulli_detects_a_doubled_rate_quickly() -> None:
    det = BernoulliCUSUM(p0=0.2, ratio=2.0, arl=ARL)
    d = delays(det, bernoulli(0.2), bernoulli(0.4), change=200)
    kl = 0.4 * math.log(2.0) + 0.6 * math.log(0.6 / 0.8)
    # Wald: from zero the CUSUM is above its random walk, which needs (h + overshoot) / KL, overshoot < log 2
    assert d.mean() <= (det.threshold + math.log(2.0)) / kl
    estimated = BernoulliCUSUM(ratio=2.0, arl=ARL)
    d_est = delays(estimated, bernoulli(0.2), bernoulli(0.4), change=300)
    assert d_est.mean() <= 1.5 * (det.threshold + math.log(2.0)) / kl


def test_page_hinkley_detects_a_one_sigma_shift() -> None:
    det = PageHinkley(sigma=1.0, arl=ARL)
    d = delays(det, gaussian(5.0), gaussian(6.0), change=200)
    # the running mean absorbs a little of the shift: 200/(200 + 25) of it is left 25 observations in
    assert d.mean() <= cusum_delay_bound(det.threshold_nats, 1.0) / (200 / 225)
    estimated = PageHinkley(arl=ARL)
    d_est = delays(estimated, gaussian(5.0), gaussian(6.0), change=230)
    assert d_est.mean() <= 1.5 * cusum_delay_bound(estimated.threshold_nats, 1.0) / (200 / 225)


# -- exactness of the vectorized path --------------------------------------------------------------------------
def _detectors() -> list[Callable[[], Detector]]:
    return [lambda: GaussianCUSUM(mu=1.0, sigma=2.0, arl=200.0), lambda: GaussianCUSUM(direction="down", arl=100.0),
            lambda: GaussianCUSUM(mu=1.0, warmup=12, arl=300.0, delta=0.5),
            lambda: PageHinkley(warmup=10, arl=200.0), lambda: PageHinkley(sigma=2.0, direction="up", arl=100.0),
            lambda: BernoulliCUSUM(p0=0.1, arl=100.0), lambda: BernoulliCUSUM(ratio=0.5, warmup=40, arl=100.0)]


@pytest.mark.parametrize("index", range(7))
def test_long_streams_in_chunks_match_one_update_at_a_time(index: int) -> None:
    make = _detectors()[index]
    rng = np.random.default_rng(index)
    n = 40_000
    level = np.repeat(rng.normal(0.0, 2.0, 8), n // 8)  # a change every 5000 observations
    if isinstance(make(), BernoulliCUSUM):
        x = (rng.random(n) < np.where(level > 0, 0.2, 0.1)).astype(float)
    else:
        x = 1.0 + level + rng.normal(0.0, 2.0, n)
    one, many = make(), make()
    expected = [i for i, v in enumerate(x.tolist()) if one.update(v)]
    cuts = [0, 3, 9000, 9001, 30_000, n]  # short and long chunks: both vectorized kernels
    got = [c + int(i) for c, e in zip(cuts, cuts[1:], strict=False) for i in many.update_many(x[c:e])]
    assert got == expected and len(expected) > 5
    assert many.to_state() == one.to_state()  # fixed point: equal bit for bit, not just close


@pytest.mark.parametrize("index", range(7))
def test_first_alarms_is_update_many_row_by_row(index: int) -> None:
    det = _detectors()[index]()
    rng = np.random.default_rng(10 + index)
    if isinstance(det, BernoulliCUSUM):
        x = (rng.random((6, 3000)) < 0.14).astype(float)
    else:
        x = rng.normal(1.0, 2.0, (6, 3000)) + np.where(np.arange(3000) > 1500, 1.5, 0.0)
    first = det.first_alarms(x)
    for row, f in zip(x, first, strict=True):
        alarms = type(det).from_state(det.to_state()).update_many(row)
        assert f == (alarms[0] if alarms.size else -1)


# -- behaviour ------------------------------------------------------------------------------------------------
def test_parameters_are_validated_naming_the_parameter() -> None:
    with pytest.raises(ValueError, match="direction"):
        GaussianCUSUM(direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="arl"):
        PageHinkley(arl=1.0)
    with pytest.raises(ValueError, match="ratio"):
        BernoulliCUSUM(ratio=1.0)
    with pytest.raises(ValueError, match="p0"):
        BernoulliCUSUM(p0=1.0)
    with pytest.raises(ValueError, match="finite"):
        GaussianCUSUM().update(float("nan"))
    with pytest.raises(ValueError, match="finite"):
        PageHinkley().update_many([1.0, math.inf])
    with pytest.raises(ValueError, match="0 or 1"):
        BernoulliCUSUM(p0=0.1).update_many([0.0, 0.5])
    det = GaussianCUSUM(mu=0.0, sigma=1.0)
    with pytest.raises(ValueError):
        det.update_many([0.0, float("nan")])
    assert det.n == 0  # a refused batch leaves the detector as it was


def test_warmup_estimates_median_and_mad_and_cannot_alarm() -> None:
    det = GaussianCUSUM(warmup=5, arl=100.0)
    for v in [1.0, 2.0, 100.0, 3.0, 4.0]:  # an outlier in the warm-up: the estimates are robust to it
        assert not det.update(v)
        assert det.statistic == 0.0
    assert det.mu == 3.0
    assert det.sigma == pytest.approx(1.482602218505602)
    assert det.n == 5
    assert det.update(40.0) and det.alarm_side == "up"
    assert not det.update(3.0) and det.n == 1 and det.mu is None  # restarted: a new warm-up


def test_constant_warmup_then_a_different_value_is_a_change() -> None:
    det = GaussianCUSUM(warmup=10)
    assert len(det.update_many(np.full(1000, 2.5))) == 0
    assert det.update(2.51)


def test_bernoulli_warmup_and_degenerate_rates() -> None:
    det = BernoulliCUSUM(ratio=2.0, warmup=10, arl=100.0)
    assert det.threshold == math.inf and det.p0 is None
    det.update_many([0.0] * 10)  # no event: the rate is taken as half an event, and an increase is watched
    assert det.p0 == pytest.approx(0.05)
    assert det.update_many([1.0] * 5).size == 1
    ones = BernoulliCUSUM(ratio=2.0, warmup=10)
    assert ones.update_many(np.ones(5000)).size == 0  # all ones: no room for an increase
    assert ones.p1 == 1.0


def test_two_sided_detects_both_directions_and_one_sided_only_its_own() -> None:
    rng = np.random.default_rng(8)
    down = np.concatenate([rng.normal(0.0, 1.0, 300), rng.normal(-1.5, 1.0, 100)])
    both = GaussianCUSUM(direction="both", mu=0.0, sigma=1.0, arl=1000.0)
    first = both.update_many(down)
    assert first.size and first[0] >= 300
    again = GaussianCUSUM(direction="both", mu=0.0, sigma=1.0, arl=1000.0)
    assert again.update_many(down[: first[0] + 1]).tolist() == [first[0]]
    assert again.alarm and again.alarm_side == "down" and again.to_state()["vars"]["side"] == "down"
    again.update(0.0)
    assert again.alarm_side is None
    up = GaussianCUSUM(direction="up", mu=0.0, sigma=1.0, arl=1000.0)
    assert up.update_many(down).size == 0
    assert PageHinkley(direction="down", sigma=1.0, arl=1000.0).update_many(down).size > 0
    late = PageHinkley(direction="up", sigma=1.0, arl=1000.0).update_many(down)
    assert np.all(late < 300)  # (a false alarm before the change is possible; none after it, going down)


def test_restarts_after_an_alarm() -> None:
    det = GaussianCUSUM(direction="up", mu=0.0, sigma=1.0, arl=100.0)
    x = np.full(60, 3.0)  # a large persistent shift: an alarm, a restart from zero, another alarm, ...
    alarms = det.update_many(x)
    assert alarms.size > 5
    gaps = np.diff(alarms)
    assert np.all(gaps == gaps[0])  # each restart begins from a zero statistic
    det2 = GaussianCUSUM(direction="up", mu=0.0, sigma=1.0, arl=100.0)
    for v in x[: alarms[0] + 1]:
        det2.update(v)
    assert det2.alarm and det2.statistic >= det2.threshold and det2.n == alarms[0] + 1
    det2.update(0.0)
    assert not det2.alarm and det2.statistic == 0.0 and det2.n == 1
    resumed = from_state(det2.to_state())
    assert resumed.to_state() == det2.to_state()


def test_page_hinkley_units_and_running_mean() -> None:
    ph = PageHinkley(sigma=4.0, arl=1000.0)
    assert ph.threshold == math.inf  # before the first observation starts the running mean
    ph.update(100.0)
    assert ph.threshold == pytest.approx(ph.threshold_nats * 4.0 / (2 * 0.5))
    ph.update_many([100.0, 104.0, 96.0])
    assert ph.mean == pytest.approx(100.0)
    assert ph.statistic >= 0.0
