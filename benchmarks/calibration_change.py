"""Calibration and power of the single-stream change detectors, at their default target ARL of 10,000.

For each detector configuration, one JSON line with:

* ``target_arl`` and ``threshold`` (nats; with Lorden's ``log(arl)`` beside it);
* the measured in-control ARL over 2000 in-control streams of ``10 * arl`` observations each (a fresh
  detector per stream, vectorized across streams with ``first_alarms``): the mean of ``min(run length,
  10 * arl)``, which is a lower bound of the ARL (exact to 0.005 % for an exponential law with mean ``arl``),
  with its standard error and the share of streams without any alarm; and the median and 10th percentile
  of the run length (for a geometric law with mean 10,000: 6931 and 1053). With estimated parameters the
  run lengths are heavy-tailed (some warm-ups leave a nearly blind segment), so their untruncated mean is
  huge and cannot be measured with 2000 streams; the truncated mean is what the thresholds are set for;
* the detection delay (observations after the change up to and including the alarm) for a stated shift,
  over 2000 streams that change after 1000 in-control observations, leaving out those with a false alarm
  before the change: median, mean, and the share still undetected 2000 observations in.

Run: ``python benchmarks/calibration_change.py`` (about two minutes). Prints one JSON line per configuration.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from detectors import BernoulliCUSUM, GaussianCUSUM, PageHinkley
from detectors.cusum import bernoulli_threshold

ARL = 10_000.0
RUNS = 2000
CHANGE = 1000
TAIL = 2000

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def gaussian(mean: float) -> Sampler:
    return lambda rng, shape: rng.normal(mean, 1.0, shape)


def bernoulli(p: float) -> Sampler:
    return lambda rng, shape: (rng.random(shape) < p).astype(np.float64)


def run_lengths(det: Any, sample: Sampler, seed: int) -> np.ndarray:
    """In-control run lengths of RUNS fresh detectors, each stream cut at 10 * ARL (a cut run counts as that)."""
    rng = np.random.default_rng(seed)
    horizon = int(10 * ARL)
    out = []
    for _ in range(RUNS // 50):
        first = det.first_alarms(sample(rng, (50, horizon)))
        out.append(np.where(first < 0, horizon, first + 1))
    return np.concatenate(out)


def delays(det: Any, before: Sampler, after: Sampler, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(RUNS // 500):
        x = np.concatenate([before(rng, (500, CHANGE)), after(rng, (500, TAIL))], axis=1)
        first = det.first_alarms(x)
        first = first[(first >= CHANGE) | (first < 0)]
        out.append(np.where(first < 0, TAIL, first - CHANGE + 1))
    d = np.concatenate(out)
    return {"delay_median": float(np.median(d)), "delay_mean": round(float(d.mean()), 2),
            "undetected_share": round(float(np.mean(d == TAIL)), 4), "delay_streams": int(d.size)}


def measure(name: str, make: Callable[[], Any], sample: Sampler, shifted: Sampler, shift: str,
            seed: int) -> dict[str, Any]:
    t = time.perf_counter()
    det = make()
    rl = run_lengths(det, sample, seed)
    h = det.threshold_nats if isinstance(det, PageHinkley) else det.threshold
    if isinstance(det, BernoulliCUSUM) and det.p0 is None:  # set per segment from the warm-up's estimate
        h = bernoulli_threshold(0.1, 0.2, ARL)
        name += " (threshold shown: for an estimate of exactly 0.1)"
    row: dict[str, Any] = {
        "detector": name, "params": det.params(), "target_arl": ARL, "threshold": round(h, 4),
        "lorden_threshold": round(math.log(ARL), 4), "streams": int(rl.size),
        "arl_measured": round(float(rl.mean()), 1), "arl_se": round(float(rl.std() / math.sqrt(rl.size)), 1),
        "censored_share": round(float(np.mean(rl == int(10 * ARL))), 4),
        "run_length_median": float(np.median(rl)), "run_length_p10": round(float(np.quantile(rl, 0.1)), 1),
        "shift": shift,
    }
    row.update(delays(det, sample, shifted, seed + 1))
    row["seconds"] = round(time.perf_counter() - t, 1)
    return row


def main() -> list[dict[str, Any]]:
    configs: list[tuple[str, Callable[[], Any], Sampler, Sampler, str]] = [
        ("gaussian_cusum known, both", lambda: GaussianCUSUM(mu=0.0, sigma=1.0), gaussian(0.0), gaussian(1.0),
         "+1 sigma"),
        ("gaussian_cusum known, up", lambda: GaussianCUSUM(direction="up", mu=0.0, sigma=1.0), gaussian(0.0),
         gaussian(1.0), "+1 sigma"),
        ("gaussian_cusum warm-up, both", lambda: GaussianCUSUM(), gaussian(0.0), gaussian(1.0), "+1 sigma"),
        ("gaussian_cusum warm-up, up", lambda: GaussianCUSUM(direction="up"), gaussian(0.0), gaussian(1.0),
         "+1 sigma"),
        ("page_hinkley known sigma, both", lambda: PageHinkley(sigma=1.0), gaussian(0.0), gaussian(1.0),
         "+1 sigma"),
        ("page_hinkley warm-up, both", lambda: PageHinkley(), gaussian(0.0), gaussian(1.0), "+1 sigma"),
        ("bernoulli_cusum known p0", lambda: BernoulliCUSUM(p0=0.1), bernoulli(0.1), bernoulli(0.2), "0.1 -> 0.2"),
        ("bernoulli_cusum warm-up", lambda: BernoulliCUSUM(), bernoulli(0.1), bernoulli(0.2), "0.1 -> 0.2"),
    ]
    rows = []
    for seed, (name, make, sample, shifted, shift) in enumerate(configs):
        row = measure(name, make, sample, shifted, shift, 100 * seed)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
