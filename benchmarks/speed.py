"""Throughput of the single-stream change detectors against river's ADWIN and PageHinkley.

Two seeded 1,000,000-value Gaussian streams, every detector on the same ones:

* ``in_control``: N(0, 1) throughout, so the only alarms are false ones (about one per ``arl`` = 10,000);
* ``shifts``: a one-sigma shift on for 200,000 values, off for 200,000, on, off... A detector with known
  parameters never adapts to the new level, so it alarms every ~15 observations for 40 % of this stream:
  the worst case for the vectorized path, which then goes one observation at a time.

The Bernoulli CUSUMs get the streams thresholded into 0/1 outcomes (``x > 1.2816``: a rate of 10 %, 18 %
under the shift). Every detector runs per event (a Python loop of ``update``, on ``in_control``) and, for
ours, vectorized (``update_many``). river's detectors have no vectorized path.

The machine this runs on may be shared and noisy, so the measurements are interleaved: ``ROUNDS`` rounds, each
timing river's ADWIN and PageHinkley once and then each of our vectorized detectors ``REPEATS`` times on each
stream; every figure is the best over the rounds (best of 3 for river, of 9 for ours). The speed-ups of our
Gaussian detectors over ADWIN are given from the best figures (``speedup_*``) and round by round, each
round's best against that round's ADWIN (``speedup_*_by_round``): their minimum is the honest worst case.

Run: ``python -m benchmarks.speed [N]`` (needs ``pip install .[bench]`` for river). Prints one JSON line:
observations per second for each, and the speed-ups.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from detectors import BernoulliCUSUM, GaussianCUSUM, PageHinkley

ROUNDS = 3
REPEATS = 3
#: our Gaussian configurations whose speed-up over river's ADWIN is reported
SPEEDUPS = ("gaussian_cusum_known_both", "gaussian_cusum_known_up", "gaussian_cusum_warmup")


def streams(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    level = np.repeat(np.arange(5) % 2 * 1.0, -(-n // 5))[:n]  # 0, +1 sigma, 0, +1 sigma, 0
    return {"in_control": rng.standard_normal(n), "shifts": level + rng.standard_normal(n)}


def per_event(update: Callable[[float], Any], values: list[float]) -> float:
    t = time.perf_counter()
    for v in values:
        update(v)
    return time.perf_counter() - t


def vectorized(make: Callable[[], Any], x: np.ndarray, repeats: int = REPEATS) -> tuple[float, int]:
    best, alarms = float("inf"), 0
    for _ in range(repeats):
        det = make()
        t = time.perf_counter()
        alarms = len(det.update_many(x))
        best = min(best, time.perf_counter() - t)
    return best, alarms


def main(n: int = 1_000_000) -> dict[str, Any]:
    data = streams(n)
    binary = {k: (v > 1.2816).astype(np.float64) for k, v in data.items()}
    xs, bs = data["in_control"].tolist(), binary["in_control"].tolist()
    out: dict[str, Any] = {"observations": n, "python": platform.python_version(), "numpy": np.__version__,
                           "rounds": ROUNDS, "repeats": REPEATS}
    river: dict[str, Callable[[], Any]] = {}
    try:
        from river import drift

        river = {"river_adwin": drift.ADWIN, "river_page_hinkley": drift.PageHinkley}
    except ImportError:  # pragma: no cover - river is an optional (bench) dependency
        out["river"] = "not installed: pip install .[bench]"
    ours: dict[str, tuple[Callable[[], Any], bool]] = {
        "gaussian_cusum_known_both": (lambda: GaussianCUSUM(mu=0.0, sigma=1.0), False),
        "gaussian_cusum_known_up": (lambda: GaussianCUSUM(direction="up", mu=0.0, sigma=1.0), False),
        "gaussian_cusum_warmup": (lambda: GaussianCUSUM(), False),
        "page_hinkley_known_sigma": (lambda: PageHinkley(sigma=1.0), False),
        "page_hinkley_warmup": (lambda: PageHinkley(), False),
        "bernoulli_cusum_known_p0": (lambda: BernoulliCUSUM(p0=0.1), True),
        "bernoulli_cusum_warmup": (lambda: BernoulliCUSUM(), True),
    }
    for make, _ in ours.values():
        make()  # thresholds are computed (and cached) at construction: not part of the timing
    for name, (make, is_binary) in ours.items():  # once: the Python loop is not what is compared here
        out[f"{name}_per_event_per_s"] = round(n / per_event(make().update, bs if is_binary else xs))
    rounds: list[dict[str, float]] = []
    for _ in range(ROUNDS):
        seconds: dict[str, float] = {}
        for name, cls in river.items():
            seconds[f"{name}_per_event"] = per_event(cls().update, xs)
        for name, (make, is_binary) in ours.items():
            for label in ("in_control", "shifts"):
                seconds[f"{name}_vectorized_{label}"], alarms = vectorized(make, (binary if is_binary else data)[label])
                out[f"{name}_alarms_{label}"] = alarms
        rounds.append(seconds)
    for key in rounds[0]:
        out[f"{key}_per_s"] = round(n / min(r[key] for r in rounds))
    if river:
        adwin = "river_adwin_per_event"
        for name in SPEEDUPS:
            for label in ("in_control", "shifts"):
                key = f"{name}_vectorized_{label}"
                out[f"speedup_{name}_{label}_vs_adwin"] = round(out[f"{key}_per_s"] / out[f"{adwin}_per_s"], 1)
                out[f"speedup_{name}_{label}_vs_adwin_by_round"] = [round(r[adwin] / r[key], 1) for r in rounds]
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))
