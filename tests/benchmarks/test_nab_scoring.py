"""The NAB scorer (``benchmarks/nab.py``) on hand-made cases whose scores are derived by hand.

NAB's scaled sigmoid is ``S(y) = 2 / (1 + exp(5 y)) - 1 = -tanh(5 y / 2)`` (and ``-1`` from ``y = 3``). With
the standard profile (tp 1, fp 0.11, fn 1):

* a window of ``W`` rows detected at its first row scores ``S(-W/W) / S(-1) = 1``; at its last row
  ``S(-1/W) / S(-1) = tanh(2.5 / W) / tanh(2.5)``; missed, ``-1``;
* a false positive before every window costs ``0.11``; ``d`` rows after the end of a window of ``W`` rows it
  costs ``0.11 tanh(2.5 d / (W - 1))``, and ``0.11`` from ``d = 3 (W - 1)`` on;
* normalised: ``100 (raw - null) / (perfect - null)``, null = ``-1`` per window, perfect = ``+1``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import nab

PROFILES, load_windows, normalized = nab.PROFILES, nab.load_windows, nab.normalized
probationary_length, scaled_sigmoid, score_corpus = nab.probationary_length, nab.scaled_sigmoid, nab.score_corpus
score_series, window_rows = nab.score_series, nab.window_rows

FP = PROFILES["standard"]["fp"]


def test_scaled_sigmoid_is_minus_tanh() -> None:
    for y in (-1.0, -0.5, -0.1, 0.0, 0.3, 1.0, 2.99):
        assert scaled_sigmoid(y) == pytest.approx(-math.tanh(2.5 * y), abs=1e-12)
    assert scaled_sigmoid(3.0) == -1.0 and scaled_sigmoid(10.0) == -1.0
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)  # NAB's documented value


def test_probationary_period_is_15_percent_capped_at_750_rows() -> None:
    assert probationary_length(100) == 15
    assert probationary_length(4032) == 604
    assert probationary_length(10_000) == 750
    assert probationary_length(100, 0.0) == 0


def test_perfect_detector_scores_100_and_null_0() -> None:
    rows = {"a.csv": 1000, "b.csv": 400}
    windows = {"a.csv": [(300, 349), (700, 799)], "b.csv": [(200, 219)]}
    perfect = {name: [w[0] for w in ws] for name, ws in windows.items()}
    assert score_corpus(perfect, rows, windows)["score"] == 100.0
    assert score_corpus({}, rows, windows)["score"] == 0.0
    got = score_corpus(perfect, rows, windows)
    assert got["raw"] == 3.0 and got["null"] == -3.0 and got["perfect"] == 3.0 and got["detected"] == 3


def test_detection_at_the_window_end_earns_almost_nothing() -> None:
    # W = 10 rows: tanh(0.25) / tanh(2.5) = 0.244919 / 0.986614 = 0.248242
    s = score_series(100, [49], [(40, 49)], probation_percent=0.0)
    assert s.score == pytest.approx(math.tanh(0.25) / math.tanh(2.5), abs=1e-12)
    assert s.score == pytest.approx(0.248242, abs=1e-6)
    assert s.detected == 1 and s.false_positives == 0
    # half way (row 45, position -5/10): tanh(1.25) / tanh(2.5) = 0.848284 / 0.986614 = 0.859793
    assert score_series(100, [45], [(40, 49)], probation_percent=0.0).score == pytest.approx(0.859793, abs=1e-6)
    # normalised over this one series: 100 (0.248242 + 1) / 2 = 62.41
    assert normalized(s.score, -1.0, 1.0) == pytest.approx(62.4121, abs=1e-4)


def test_only_the_first_detection_in_a_window_counts() -> None:
    one = score_series(100, [42], [(40, 49)], probation_percent=0.0).score
    assert score_series(100, [42, 44, 49], [(40, 49)], probation_percent=0.0).score == one
    assert one == pytest.approx(math.tanh(2.5 * 8 / 10) / math.tanh(2.5), abs=1e-12)


def test_false_positives() -> None:
    w = [(40, 49)]  # W = 10, W - 1 = 9
    # before the first window: -0.11 (plus the missed window's -1)
    s = score_series(100, [10], w, probation_percent=0.0)
    assert s.score == pytest.approx(-1.0 - FP) and s.false_positives == 1
    # 9 rows after the end: -0.11 tanh(2.5) = -0.108528
    assert score_series(100, [58], w, probation_percent=0.0).score == pytest.approx(-1.0 - FP * math.tanh(2.5))
    # just after the end: a small cost, 0.11 tanh(2.5 / 9) = 0.029793
    assert score_series(100, [50], w, probation_percent=0.0).score == pytest.approx(-1.0 - 0.029793, abs=1e-6)
    # 27 rows after (y = 3) and beyond: the full -0.11
    assert score_series(100, [76], w, probation_percent=0.0).score == pytest.approx(-1.0 - FP)
    assert score_series(100, [99], w, probation_percent=0.0).score == pytest.approx(-1.0 - FP)
    # a detected window and a false positive after it: 1 - 0.108528
    assert score_series(100, [40, 58], w, probation_percent=0.0).score == pytest.approx(1.0 - FP * math.tanh(2.5))


def test_false_positives_count_from_the_closest_preceding_window() -> None:
    w = [(20, 29), (60, 79)]  # W = 10 then W = 20
    s = score_series(200, [35, 82], w, probation_percent=0.0)
    # row 35: 6 rows after window 1 (W - 1 = 9): -0.11 tanh(2.5 * 6 / 9); row 82: 3 after window 2 (19)
    expected = -2.0 - FP * math.tanh(2.5 * 6 / 9) - FP * math.tanh(2.5 * 3 / 19)
    assert s.score == pytest.approx(expected, abs=1e-12) and s.false_positives == 2


def test_probationary_rows_are_not_scored() -> None:
    # 100 rows: the first 15 are probationary; a detection there is neither a false positive nor a hit
    assert score_series(100, [3], [(40, 49)]).score == -1.0
    assert score_series(100, [3], [(40, 49)]).false_positives == 0
    assert score_series(100, [15], [(40, 49)]).score == pytest.approx(-1.0 - FP)
    # a window wholly inside the probationary period is not scored at all, but counts for "perfect" (as in
    # NAB, whose perfect score is tp times every labelled window): raw 1, null -1, perfect 2 -> 100 * 2 / 3
    assert score_series(100, [], [(2, 9), (40, 49)]).score == -1.0
    assert score_corpus({"a": [40]}, {"a": 100}, {"a": [(2, 9), (40, 49)]})["score"] == pytest.approx(66.67)


def test_other_profiles() -> None:
    assert score_series(100, [10], [(40, 49)], "reward_low_FP_rate", 0.0).score == pytest.approx(-1.22)
    assert score_series(100, [], [(40, 49)], "reward_low_FN_rate", 0.0).score == -2.0


def test_bad_windows_and_detections_are_refused() -> None:
    with pytest.raises(ValueError, match="windows"):
        score_series(100, [], [(40, 49), (45, 60)])
    with pytest.raises(ValueError, match="windows"):
        score_series(100, [], [(90, 120)])
    with pytest.raises(ValueError, match="outside"):
        score_series(100, [100], [(40, 49)])


def test_window_limits_map_to_rows(tmp_path: Path) -> None:
    stamps = [f"2014-01-01 00:{m:02d}:00" for m in range(10)]
    assert window_rows(stamps, [("2014-01-01 00:02:00.000000", "2014-01-01 00:05:00.000000")]) == [(2, 5)]
    with pytest.raises(ValueError, match="not a timestamp"):
        window_rows(stamps, [("2014-01-01 00:02:30", "2014-01-01 00:05:00")])
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(
        '{"x/y.csv": [["2014-01-01 00:02:00.000000", "2014-01-01 00:05:00.000000"]]}')
    assert load_windows(tmp_path) == {"x/y.csv": [("2014-01-01 00:02:00.000000", "2014-01-01 00:05:00.000000")]}
