"""Throughput of the single-stream change detectors against river's ADWIN and PageHinkley.

Two seeded 1,000,000-value Gaussian streams, every detector on the same ones:

* ``in_control``: N(0, 1) throughout, so the only alarms are false ones (about one per ``arl`` = 10,000);
* ``shifts``: a one-sigma shift on for 200,000 values, off for 200,000, on, off... A detector with known
  parameters never adapts to the new level, so it alarms every ~15 observations for 40 % of this stream:
  the worst case for the vectorized path, which then goes one observation at a time.

The Bernoulli CUSUMs get the streams thresholded into 0/1 outcomes (``x > 1.2816``: a rate of 10 %, 18 %
under the shift). Every detector runs per event (a Python loop of ``update``, on ``in_control``) and, for
ours, vectorized (``update_many``, best of 5 runs). river's detectors have no vectorized path.

Run: ``python benchmarks/speed.py [N]`` (needs ``pip install .[bench]`` for river). Prints one JSON line:
observations per second for each, and the speed-up of the vectorized Gaussian CUSUM over river's ADWIN.
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


def streams(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    level = np.repeat(np.arange(5) % 2 * 1.0, -(-n // 5))[:n]  # 0, +1 sigma, 0, +1 sigma, 0
    return {"in_control": rng.standard_normal(n), "shifts": level + rng.standard_normal(n)}


def per_event(update: Callable[[float], Any], values: list[float]) -> float:
    t = time.perf_counter()
    for v in values:
        update(v)
    return time.perf_counter() - t


def vectorized(make: Callable[[], Any], x: np.ndarray, repeats: int = 5) -> tuple[float, int]:
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
    out: dict[str, Any] = {"observations": n, "python": platform.python_version(), "numpy": np.__version__}
    try:
        from river import drift

        adwin, ph = drift.ADWIN(), drift.PageHinkley()
        out["river_adwin_per_event_per_s"] = round(n / per_event(adwin.update, xs))
        out["river_page_hinkley_per_event_per_s"] = round(n / per_event(ph.update, xs))
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
    for name, (make, is_binary) in ours.items():
        make()  # thresholds are computed (and cached) at construction: not part of the timing
        out[f"{name}_per_event_per_s"] = round(n / per_event(make().update, bs if is_binary else xs))
        for label in ("in_control", "shifts"):
            seconds, alarms = vectorized(make, (binary if is_binary else data)[label])
            out[f"{name}_vectorized_{label}_per_s"] = round(n / seconds)
            out[f"{name}_alarms_{label}"] = alarms
    if "river_adwin_per_event_per_s" in out:
        for name in ("gaussian_cusum_known_both", "gaussian_cusum_known_up"):
            for label in ("in_control", "shifts"):
                out[f"speedup_{name}_{label}_vs_adwin"] = round(
                    out[f"{name}_vectorized_{label}_per_s"] / out["river_adwin_per_event_per_s"], 1)
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))
