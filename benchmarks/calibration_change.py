"""Calibration and power of the single-stream change detectors, at their default target ARL of 10,000.

For each detector configuration, one JSON line with:

* ``target_arl`` and ``threshold`` (with Lorden's ``log(arl)`` beside it);
* the measured in-control ARL: the mean of at least 2000 complete run lengths. They come from one long
  in-control stream through ``update_many``: after each alarm the detector restarts afresh (a new warm-up
  when it estimates), so the gaps between alarms are independent run lengths, i.e. 2000 in-control streams
  back to back, through the real vectorized path. With its standard error, median and 10th percentile
  (a geometric law with mean 10,000 has median 6931 and 10th percentile 1053), and, for the estimated
  configurations, the mean of ``min(run length, 10 * arl)``: the quantity their thresholds are set for;
* the detection delay (observations after the change up to and including the alarm) for a stated shift,
  over 2000 streams (``first_alarms``) that change after 1000 in-control observations, leaving out those
  with a false alarm before the change: median, mean, and the share still undetected 2000 observations in.

Run: ``python benchmarks/calibration_change.py`` (about a minute). Prints one JSON line per configuration.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from detectors import BernoulliCUSUM, GaussianCUSUM, PageHinkley

ARL = 10_000.0
RUNS = 2000
CHANGE = 1000
TAIL = 2000

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def gaussian(mean: float) -> Sampler:
    return lambda rng, shape: rng.normal(mean, 1.0, shape)


def bernoulli(p: float) -> Sampler:
    return lambda rng, shape: (rng.random(shape) < p).astype(np.float64)


def run_lengths(make: Callable[[], Any], sample: Sampler, seed: int, limit: float = 2e9) -> tuple[np.ndarray, int]:
    """At least RUNS complete in-control run lengths, from one stream in chunks; and the observations used."""
    rng = np.random.default_rng(seed)
    det = make()
    alarms: list[int] = []
    used = 0
    while len(alarms) < RUNS + 1 and used < limit:
        chunk = sample(rng, (1 << 22,))
        alarms.extend(used + int(i) for i in det.update_many(chunk))
        used += chunk.size
    ends = np.asarray(alarms[:RUNS], dtype=np.int64)
    return np.diff(np.concatenate([[-1], ends])), used


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


def measure(name: str, make: Callable[[], Any], sample: Sampler, shifted: Sampler, shift: str, seed: int,
            estimated: bool) -> dict[str, Any]:
    t = time.perf_counter()
    det = make()
    rl, used = run_lengths(make, sample, seed)
    row: dict[str, Any] = {
        "detector": name, "params": det.params(), "target_arl": ARL,
        "threshold": round(det.threshold_nats if isinstance(det, PageHinkley) else det.threshold, 4),
        "lorden_threshold": round(math.log(ARL), 4), "runs": int(rl.size), "observations": used,
        "arl_measured": round(float(rl.mean()), 1), "arl_se": round(float(rl.std() / math.sqrt(rl.size)), 1),
        "run_length_median": float(np.median(rl)), "run_length_p10": float(np.quantile(rl, 0.1)),
    }
    if estimated:
        row["arl_truncated_at_10x"] = round(float(np.minimum(rl, 10 * ARL).mean()), 1)
    row["shift"] = shift
    row.update(delays(det, sample, shifted, seed + 1))
    row["seconds"] = round(time.perf_counter() - t, 1)
    return row


def main() -> list[dict[str, Any]]:
    configs: list[tuple[str, Callable[[], Any], Sampler, Sampler, str, bool]] = [
        ("gaussian_cusum known, both", lambda: GaussianCUSUM(mu=0.0, sigma=1.0), gaussian(0.0), gaussian(1.0),
         "+1 sigma", False),
        ("gaussian_cusum known, up", lambda: GaussianCUSUM(direction="up", mu=0.0, sigma=1.0), gaussian(0.0),
         gaussian(1.0), "+1 sigma", False),
        ("gaussian_cusum warm-up, both", lambda: GaussianCUSUM(), gaussian(0.0), gaussian(1.0), "+1 sigma", True),
        ("gaussian_cusum warm-up, up", lambda: GaussianCUSUM(direction="up"), gaussian(0.0), gaussian(1.0),
         "+1 sigma", True),
        ("page_hinkley known sigma, both", lambda: PageHinkley(sigma=1.0), gaussian(0.0), gaussian(1.0), "+1 sigma",
         False),
        ("page_hinkley warm-up, both", lambda: PageHinkley(), gaussian(0.0), gaussian(1.0), "+1 sigma", True),
        ("bernoulli_cusum known p0", lambda: BernoulliCUSUM(p0=0.1), bernoulli(0.1), bernoulli(0.2), "0.1 -> 0.2",
         False),
        ("bernoulli_cusum warm-up", lambda: BernoulliCUSUM(), bernoulli(0.1), bernoulli(0.2), "0.1 -> 0.2", True),
    ]
    rows = []
    for seed, (name, make, sample, shifted, shift, estimated) in enumerate(configs):
        row = measure(name, make, sample, shifted, shift, 100 * seed, estimated)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
