"""The live analysis's value tests and :class:`detectors.QuantileExceedanceTest` are one test.

Both bin values with :class:`detectors.exceedance.LogBins` (the summaries' bins are the detector's at
``RELATIVE_ACCURACY``), set thresholds with :func:`~detectors.exceedance.quantile_keys` and count the values
beyond them with :func:`~detectors.exceedance.exceedances`. Fed the same values, with the analysis's buckets
as the detector's blocks, they set the same thresholds and reach the same statistics.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.analysis.canary import CanaryAnalysis
from controller.config import Analysis, MetricOverride
from controller.ingest.buckets import BINS, RELATIVE_ACCURACY, Bucket, bin_of
from detectors import QuantileExceedanceTest
from detectors.exceedance import LogBins, exceedances, quantile_keys

METRIC = "latency_ms"
STABLE, CANARY = 300, 30  # values per bucket of each version: the canary is the rarer arm, a block is a bucket
MIN_HISTORY = 200


def _bucket(version: str, start: int, values: np.ndarray) -> Bucket:
    hist: dict[int, int] = {}
    for x in values.tolist():
        k = bin_of(x)
        hist[k] = hist.get(k, 0) + 1
    return Bucket(version=version, track="stable" if version == "v1" else "canary", channel="webchat", start=start,
                  n=len(values), values={METRIC: hist}, sums={METRIC: float(values.sum())})


@given(st.lists(st.floats(-1e15, 1e15, allow_nan=False), min_size=1, max_size=50))
def test_one_value_and_an_array_get_the_same_bins(xs: list[float]) -> None:
    assert BINS.keys(np.asarray(xs)).tolist() == [BINS.key(x) for x in xs] == [bin_of(x) for x in xs]


def test_the_summaries_bins_are_the_detectors_at_their_accuracy() -> None:
    x = np.random.default_rng(7).lognormal(3.0, 2.0, 5000) * np.random.default_rng(8).choice([-1.0, 1.0], 5000)
    detector = QuantileExceedanceTest(relative_accuracy=RELATIVE_ACCURACY)
    assert detector._keys(x).tolist() == LogBins(RELATIVE_ACCURACY).keys(x).tolist() == [bin_of(v) for v in x]
    assert abs(bin_of(1000.0) - bin_of(1000.0 * 1.05)) == 1  # 5% wide, as the summaries always were


def test_quantiles_and_counts_beyond_them() -> None:
    keys, counts = np.array([-3, 0, 4, 9]), np.array([1, 2, 3, 4])
    assert quantile_keys(keys, counts, [0.1, 0.5, 0.9]).tolist() == [-3, 4, 9]
    assert exceedances(keys, counts, np.array([0, 4]), "increase").tolist() == [7, 4]
    assert exceedances(keys, counts, np.array([0, 4]), "decrease").tolist() == [1, 3]


@pytest.mark.parametrize("slower", [1.0, 1.15])
def test_the_analysis_and_the_detector_reach_the_same_statistics(slower: float) -> None:
    rng = np.random.default_rng(11)
    # without fresh starts (changeEvery 0), one stratum per bucket, as the detector counts its evidence: from the start
    settings = Analysis(alpha=0.01, baseline_min_samples=MIN_HISTORY, metrics=(MetricOverride(name=METRIC),),
                        change_every=0, stratum=0)
    analysis = CanaryAnalysis("v1", "v2", settings)
    # block = the canary's values per bucket: with each bucket's stable values first, a block closes at the
    # bucket's last canary value, so the detector's blocks are the analysis's buckets
    detector = QuantileExceedanceTest(alpha=0.01, block=CANARY, min_history=MIN_HISTORY,
                                      relative_accuracy=RELATIVE_ACCURACY)
    names = [f"{METRIC}>p50", f"{METRIC}>p90"]
    # the analysis sets its thresholds again once the history has grown by a tenth: with equal buckets, at
    # every one of the first eleven, as the detector does at every block
    for i in range(11):
        stable = rng.lognormal(5.0, 0.5, STABLE)
        canary = rng.lognormal(5.0, 0.5, CANARY) * slower
        before = detector.thresholds
        detector.update_many(np.concatenate([stable, canary]), np.r_[np.zeros(STABLE, bool), np.ones(CANARY, bool)])
        analysis.observe(i, [_bucket("v1", i, stable), _bucket("v2", i, canary)])
        if before is None:  # the history is still too short: neither tests
            assert not analysis.tests and METRIC not in analysis.thresholds.bins
            continue
        assert [BINS.edge(b) for b in analysis.thresholds.bins[METRIC].values()] == before
        # per quantile, the same tables: the same likelihood ratios on the same grid
        state = detector.to_state()["vars"]
        per_quantile = np.asarray(state["log_lr"]).reshape(2, -1)
        for name, lr in zip(names, per_quantile, strict=True):
            assert analysis.tests[name].to_state()["vars"]["log_lr"] == pytest.approx(lr.tolist(), abs=1e-9)
        # the detector's statistic is the average of the quantile tests' likelihood ratios
        stats = [analysis.tests[n].statistic for n in names]
        assert detector.statistic == pytest.approx(math.log(sum(math.exp(s) for s in stats) / 2), abs=1e-9)
    assert analysis.tests  # both did test
    if slower > 1.0:
        assert detector.alarm and any(t.alarm for t in analysis.tests.values())
    else:
        assert not detector.alarm and not any(t.alarm for t in analysis.tests.values())
