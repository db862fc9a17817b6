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

Then (``--warmup``: this part only) the warm-up study, for the detectors that estimate their parameters from a
warm-up (GaussianCUSUM two-sided and up with ``delta=1``, PageHinkley with ``delta=0.5``: both tuned for a
1-sigma shift), warm-ups of 30, 100, 200 and 500 observations, and two threshold rules: ``median+mean`` (the
rule before: the median conditional ARL and the truncated mean run length reach ``arl``) and ``p10`` (the
rule now: also the 10th percentile of the conditional ARL reaches ``arl / 2``). One JSON line each, with:

* ``threshold`` (nats) and the percentiles of the *conditional* ARL: the ARL of the segment that follows a
  warm-up, given its estimates (for the Gaussian detectors, exactly a CUSUM of i.i.d. Gaussian increments
  with a wrong mean and scale; exact integral-equation ARL per side, two-sided by ``1/L = 1/L_up +
  1/L_down``), over 2000 fresh simulated warm-ups (seeded, not the threshold's own); the share of warm-ups
  below ``arl / 2`` and ``arl / 10``; the largest relative error of the threshold's own approximation
  (Siegmund's, scaled) on the lower half of the warm-ups, and its sign;
* the detection delay for a 1-sigma and a 2-sigma shift, 500 observations after the warm-up (2000
  streams, as above);
* for the ``p10`` rule at the default warm-up of 200, a check of the conditional ARL by simulation: the
  warm-up at the 10th percentile is replayed (a two-point warm-up with the same estimates) before 1000
  in-control streams of ``10 * L`` observations; the mean of ``min(run length, 10 * L)`` against ``L``.

Run: ``python -m benchmarks.calibration_change [--warmup]`` (about two minutes each part). Prints one JSON
line per configuration.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from detectors import BernoulliCUSUM, GaussianCUSUM, PageHinkley
from detectors.change.arl import (
    LOW_FRACTION,
    LOW_QUANTILE,
    bernoulli_threshold,
    gaussian_arl,
    gaussian_threshold_est,
    robust_rows,
    siegmund_arl,
)

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


# -- the warm-up study -----------------------------------------------------------------------------------------
WARMUPS = (30, 100, 200, 500)
WARMUP_DRAWS = 2000
AFTER_WARMUP = 500  # in-control observations between the warm-up and the change, in the delay streams
#: (name, detector class, delta of the detector, delta of its log-likelihood-ratio CUSUM, up, down, estimates mu)
FAMILIES: list[tuple[str, type, float, float, bool, bool, bool]] = [
    ("gaussian_cusum both", GaussianCUSUM, 1.0, 1.0, True, True, True),
    ("gaussian_cusum up", GaussianCUSUM, 1.0, 1.0, True, False, True),
    ("page_hinkley both", PageHinkley, 0.5, 1.0, True, True, False),
]


def segment_arls(h: float, d: float, up: bool, down: bool, m: np.ndarray, s: np.ndarray, *,
                 exact: bool = True) -> np.ndarray:
    """The ARL of the segment after each warm-up (standardized estimates ``m``, ``s``): a CUSUM with threshold h
    of increments ``N(-+d m/s - d**2/2, (d/s)**2)`` per side; two-sided by ``1/L = 1/L_up + 1/L_down``.
    ``exact=False``: the approximation the thresholds are computed with (Siegmund's, scaled)."""
    fix = 1.0 if exact else gaussian_arl(h, -d * d / 2, d) / float(siegmund_arl(h, -d * d / 2, d))
    inv = np.zeros(m.size)
    for on, sign in ((up, -1.0), (down, 1.0)):
        if not on:
            continue
        mus, sds = sign * d * m / s - d * d / 2, d / s
        if exact:
            inv += 1.0 / np.array([gaussian_arl(h, float(a), float(b)) for a, b in zip(mus, sds, strict=True)])
        else:
            inv += 1.0 / (siegmund_arl(h, mus, sds) * fix)
    return 1.0 / inv


def warmup_delays(det: Any, w: int, shift: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    change = w + AFTER_WARMUP
    out = []
    for _ in range(RUNS // 500):
        x = np.concatenate([rng.standard_normal((500, change)), rng.normal(shift, 1.0, (500, TAIL))], axis=1)
        first = det.first_alarms(x)
        first = first[(first >= change) | (first < 0)]
        out.append(np.where(first < 0, TAIL, first - change + 1))
    d = np.concatenate(out)
    return {"median": float(np.median(d)), "mean": round(float(d.mean()), 2), "p90": float(np.quantile(d, 0.9)),
            "undetected_share": round(float(np.mean(d == TAIL)), 4)}


def replay(det: Any, w: int, mu_hat: float, sigma_hat: float, d: float, up: bool, down: bool, est_mu: bool,
           seed: int) -> dict[str, float]:
    """Simulated ARL of the segment after warm-ups with these estimates, against the exact value.

    Each stream gets its own Gaussian warm-up, moved and rescaled to give exactly these estimates: about
    its median for GaussianCUSUM (whose segment depends on the warm-up through its estimates only); about its
    mean for PageHinkley (whose running mean carries the warm-up's mean, independent of its scale)."""
    h = det.threshold if isinstance(det, GaussianCUSUM) else det.threshold_nats
    exact = float(segment_arls(h, d, up, down, np.array([mu_hat if est_mu else 0.0]), np.array([sigma_hat]))[0])
    horizon = int(10 * exact)
    rng = np.random.default_rng(seed)
    rl = []
    for _ in range(1000 // 100):
        z = rng.standard_normal((100, w))
        med, scale = robust_rows(z)
        centre = med if est_mu else z.mean(axis=1)
        at = np.full(100, mu_hat) if est_mu else centre
        warm = at[:, None] + (z - centre[:, None]) * (sigma_hat / scale)[:, None]
        first = det.first_alarms(np.concatenate([warm, rng.standard_normal((100, horizon))], axis=1))
        rl.append(np.where(first < 0, horizon, first - w + 1))
    r = np.concatenate(rl)
    return {"replayed_mu_hat": round(mu_hat, 4) if est_mu else None, "replayed_sigma_hat": round(sigma_hat, 4),
            "exact_arl": round(exact, 1), "simulated_arl": round(float(r.mean()), 1),
            "simulated_se": round(float(r.std() / math.sqrt(r.size)), 1), "streams": int(r.size)}


def warmup_study() -> list[dict[str, Any]]:
    rows = []
    for f_index, (name, cls, delta, d, up, down, est_mu) in enumerate(FAMILIES):
        for w in WARMUPS:
            med, scale = robust_rows(np.random.default_rng(1000 + w).standard_normal((WARMUP_DRAWS, w)))
            m = med if est_mu else np.zeros(WARMUP_DRAWS)
            for rule, fraction in (("median+mean", 0.0), ("p10", LOW_FRACTION)):
                t = time.perf_counter()
                h = gaussian_threshold_est(ARL, d, up, down, w, est_mu, True, fraction)
                arls = segment_arls(h, d, up, down, m, scale)
                approx = segment_arls(h, d, up, down, m, scale, exact=False)
                lower = arls <= np.median(arls)
                err = approx[lower] / arls[lower] - 1.0
                det = cls(delta=delta, direction="both" if down else "up", warmup=w, arl=ARL)
                det._h = h  # the rule being measured (the detector's own is "p10")
                row: dict[str, Any] = {
                    "detector": name, "warmup": w, "rule": rule, "threshold": round(h, 3),
                    "conditional_arl_p1": round(float(np.quantile(arls, 0.01)), 1),
                    "conditional_arl_p5": round(float(np.quantile(arls, 0.05)), 1),
                    "conditional_arl_p10": round(float(np.quantile(arls, LOW_QUANTILE)), 1),
                    "conditional_arl_median": round(float(np.median(arls)), 1),
                    "share_below_half_arl": round(float(np.mean(arls < ARL / 2)), 4),
                    "share_below_tenth_arl": round(float(np.mean(arls < ARL / 10)), 4),
                    "approximation_error_lower_half": [round(float(err.min()), 4), round(float(err.max()), 4)],
                }
                for shift in (1.0, 2.0):
                    row[f"delay_{shift:g}_sigma"] = warmup_delays(det, w, shift, 7 * w + int(shift))
                if rule == "p10" and w == 200:
                    k = int(np.argsort(arls)[int(LOW_QUANTILE * WARMUP_DRAWS)])
                    row["replay_p10_warmup"] = replay(det, w, float(med[k]), float(scale[k]), d, up, down, est_mu,
                                                      31 + f_index)
                row["seconds"] = round(time.perf_counter() - t, 1)
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


if __name__ == "__main__":
    if "--warmup" not in sys.argv[1:]:
        main()
    warmup_study()
