"""Tests of the single-stream change detectors: ``GaussianCUSUM``, ``BernoulliCUSUM`` (``detectors.change.cusum``) and
``PageHinkley`` (``detectors.change.page_hinkley``).

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
from detectors.change.cusum import bernoulli_threshold, gaussian_arl, gaussian_threshold, siegmund_arl

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
    det = GaussianCUSUM(direction=direction, arl=ARL)  # mu and sigma from a 200-observation warm-up
    rl = run_lengths(det, gaussian(-4.0, 0.5), seed=2)
    assert_calibrated(rl)
    assert np.all(rl > det.params()["warmup"])  # no alarm during the warm-up


def test_estimated_thresholds_are_raised_for_the_estimation_error() -> None:
    known = GaussianCUSUM(direction="both", mu=0.0, sigma=1.0, arl=ARL, delta=0.5)
    estimated = GaussianCUSUM(direction="both", arl=ARL, delta=0.5)
    assert estimated.threshold > known.threshold + 0.5  # a misplaced mean shortens one side's runs
    assert_calibrated(run_lengths(estimated, gaussian(), seed=3))
    one_sided = GaussianCUSUM(direction="up", arl=ARL, delta=0.5)
    assert one_sided.threshold > GaussianCUSUM(direction="up", mu=0.0, sigma=1.0, arl=ARL, delta=0.5).threshold
    # the longer the warm-up, the closer to the known-parameter threshold
    longer = [GaussianCUSUM(direction="both", warmup=w, arl=ARL, delta=0.5).threshold for w in (50, 200, 500)]
    assert longer[0] > longer[1] > longer[2] > known.threshold
    assert PageHinkley(warmup=500, arl=ARL).threshold_nats < PageHinkley(arl=ARL).threshold_nats
    with pytest.raises(ValueError, match="warmup"):  # no threshold below 4096 nats gives the guarantee
        GaussianCUSUM(delta=0.5, warmup=30, arl=1e6)


# -- the warm-up guarantee ------------------------------------------------------------------------------------
def conditional_arls(det: GaussianCUSUM | PageHinkley, warmups: NDArray[np.float64]) -> NDArray[np.float64]:
    """The ARL of the segment after each warm-up (rows of N(0, 1) draws), given the detector's estimates: a
    CUSUM of i.i.d. Gaussian increments with a wrong mean and scale, whose exact ARL the integral equation
    gives per side (two-sided: ``1/L = 1/L_up + 1/L_down``). The estimator, written out again: the median
    and 1.4826 times the MAD (PageHinkley estimates only the scale; its residuals need no mean)."""
    med = np.median(warmups, axis=1)
    scale = 1.482602218505602 * np.median(np.abs(warmups - med[:, None]), axis=1)
    if isinstance(det, PageHinkley):
        d, h, m = 2.0 * det.params()["delta"], det.threshold_nats, np.zeros(med.size)
    else:  # (a given mu is the true one: the streams are N(0, 1))
        d, h, m = det.delta, det.threshold, med if det.params()["mu"] is None else np.zeros(med.size)
    direction = det.params()["direction"]
    inv = np.zeros(med.size)
    for side, sign in (("up", -1.0), ("down", 1.0)):
        if direction in (side, "both"):
            inv += [1.0 / gaussian_arl(h, sign * d * a / b - d * d / 2, d / b) for a, b in zip(m, scale, strict=True)]
    return 1.0 / inv


GUARANTEED: list[Callable[[], GaussianCUSUM | PageHinkley]] = [
    GaussianCUSUM, lambda: GaussianCUSUM(direction="up"), PageHinkley,
    lambda: GaussianCUSUM(delta=2.0, direction="down", warmup=50, arl=ARL),
    lambda: GaussianCUSUM(mu=0.0, delta=0.5, warmup=100, arl=ARL)]  # (the streams are N(0, 1): mu is right)


@pytest.mark.parametrize("index", range(len(GUARANTEED)))
def test_nine_warmups_in_ten_give_a_segment_with_at_least_half_the_target_arl(index: int) -> None:
    """The docstrings' guarantee with estimated parameters, on 4000 fresh warm-ups (not the threshold's own):
    (i) at most 10 % of the segments have an ARL below arl / 2, (ii) at most half below arl. Each share is
    checked against its bound plus three binomial standard errors. The ARL of each segment is exact, which is
    worth simulating ~1000 streams per warm-up (and is checked by simulation in the next test)."""
    det = GUARANTEED[index]()
    warm = det.params()["warmup"]
    arls = conditional_arls(det, np.random.default_rng(40 + index).standard_normal((4000, warm)))
    assert np.mean(arls < det.arl / 2) <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / arls.size)
    assert np.mean(arls < det.arl) <= 0.5 + 3 * math.sqrt(0.5 * 0.5 / arls.size)


@pytest.mark.parametrize("make", [lambda: GaussianCUSUM(arl=ARL), lambda: PageHinkley(direction="up", arl=ARL)])
def test_the_conditional_arl_is_the_run_length_of_the_segment(make: Callable[[], Detector]) -> None:
    """The segment after the warm-up at the 10th percentile of the conditional ARL, by simulation: 2000 streams
    whose warm-ups are Gaussian draws moved and rescaled to give exactly those estimates (about the median for
    the CUSUM, which sees the warm-up only through them; about the mean for Page-Hinkley, whose running mean
    keeps the warm-up's mean, independent of its scale), then in-control observations."""
    det = make()
    assert not isinstance(det, BernoulliCUSUM)
    warm = det.params()["warmup"]
    rng = np.random.default_rng(50)
    draws = rng.standard_normal((1000, warm))
    arls = conditional_arls(det, draws)
    k = int(np.argsort(arls)[100])
    target = float(arls[k])
    assert target >= ARL / 2 * 0.9
    row = draws[k]
    med = float(np.median(row))
    scale = 1.482602218505602 * float(np.median(np.abs(row - med)))
    horizon = int(10 * target)
    z = rng.standard_normal((2000, warm))
    z_med = np.median(z, axis=1)
    z_scale = 1.482602218505602 * np.median(np.abs(z - z_med[:, None]), axis=1)
    centre = z.mean(axis=1) if isinstance(det, PageHinkley) else z_med
    at = centre if isinstance(det, PageHinkley) else np.full(2000, med)
    warmups = at[:, None] + (z - centre[:, None]) * (scale / z_scale)[:, None]
    first = det.first_alarms(np.concatenate([warmups, rng.standard_normal((2000, horizon))], axis=1))
    rl = np.where(first < 0, horizon, first - warm + 1)
    mean, se = float(rl.mean()), float(rl.std() / math.sqrt(rl.size))
    assert abs(mean - target) <= 3 * se, f"simulated {mean:.0f} +- {se:.0f}, exact {target:.0f}"


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


def edge_stream(n: int = 3 * 65536 + 1000) -> NDArray[np.float64]:
    """In-control N(0, 1) with spikes (each an alarm of its own, whatever the threshold here) on the edges of
    the column layout's columns (32 observations) and blocks (65536), alarms in quick succession, a mild
    shift that keeps the statistic up across many columns after an alarm, outliers past the fixed-point range
    (the clipped path), and an alarm in the last, partial, column."""
    x = np.random.default_rng(60).standard_normal(n)
    for t in (31, 32, 63, 64, 8191, 8192, 65535, 65536, 65567, 65568, 131071, 131072, 131103, n - 3):
        x[t] = 60.0
    for t in (95, 96, 65536 + 127, 65536 + 128, 131072 + 31):
        x[t] = -60.0
    x[40_000:40_009:4] = 60.0  # three alarms 4 apart: update_many goes one observation at a time, then back
    x[50_000] = x[50_003] = 60.0  # two 3 apart: it stays in the column layout
    x[70_000] = 60.0
    x[70_001:70_400] += 0.6  # the restarted statistic stays below the unrestarted one for hundreds of steps
    x[120_000], x[131_070], x[131_073] = 1e9, -1e9, 1e7  # beyond 2**44 / 2**30 nats: clipped
    x[140_000:190_000] -= 100.0  # the up side's sums across columns pass 2**52: computed in int64
    x[190_003] = 200.0
    return x


@pytest.mark.parametrize("make", [
    lambda: GaussianCUSUM(mu=0.0, sigma=1.0), lambda: GaussianCUSUM(direction="up", mu=0.0, sigma=1.0),
    lambda: GaussianCUSUM(direction="down", mu=0.0, sigma=1.0, delta=2.0), lambda: GaussianCUSUM(warmup=50),
    lambda: PageHinkley(sigma=1.0), lambda: PageHinkley(direction="up", warmup=50)])
def test_column_layout_alarms_on_column_and_block_edges_match_one_update_at_a_time(
        make: Callable[[], Detector]) -> None:
    x = edge_stream()
    one = make()
    expected = [i for i, v in enumerate(x.tolist()) if one.update(v)]
    for cuts in ([0, x.size], [0, 65535, 65537, 140_000, x.size], [0, 31, 70_001, 131_072, x.size]):
        many = make()
        got = [c + int(i) for c, e in zip(cuts, cuts[1:], strict=False) for i in many.update_many(x[c:e])]
        assert got == expected
        assert many.to_state() == one.to_state()
    assert len(expected) >= 8


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


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_refused_long_batch_leaves_the_detector_as_it_was(bad: float) -> None:
    """A long batch is checked as it is processed (not in a pass of its own), from a snapshot: a value that is
    not finite deep inside it, in the column layout or in a warm-up, still leaves the detector untouched."""
    rng = np.random.default_rng(70)
    x = rng.standard_normal(140_000)
    for make in (lambda: GaussianCUSUM(mu=0.0, sigma=1.0), GaussianCUSUM, PageHinkley,
                 lambda: BernoulliCUSUM(p0=0.1)):
        for at in (1003, 50_100, 100_000, 139_990):
            det, ref = make(), make()
            y = (x > 1.2816).astype(float) if isinstance(det, BernoulliCUSUM) else x.copy()
            y[50_000:50_030] = 1.0 if isinstance(det, BernoulliCUSUM) else 60.0  # an alarm: 50_100 is in a warm-up
            det.update_many(y[:1000])
            ref.update_many(y[:1000])
            before = det.to_state()
            z = y.copy()
            z[at] = bad
            with pytest.raises(ValueError, match="finite|0 or 1"):
                det.update_many(z[1000:])
            assert det.to_state() == before
            assert det.update_many(y[1000:]).tolist() == ref.update_many(y[1000:]).tolist()


def test_warmup_estimates_median_and_mad_and_cannot_alarm() -> None:
    det = GaussianCUSUM(warmup=5, arl=100.0)
    for v in [1.0, 2.0, 100.0, 3.0, 4.0]:  # an outlier in the warm-up: the estimates are robust to it
        assert not det.update(v)
        assert det.statistic == 0.0
    assert det.mu == 3.0
    assert det.sigma == pytest.approx(1.482602218505602)
    assert det.n == 5
    assert det.threshold > 50.0  # five observations guarantee little: a high threshold
    assert det.update(200.0) and det.alarm_side == "up"
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
