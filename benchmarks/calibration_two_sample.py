"""Calibration, power and delay of the per-observation two-sample tests (``detectors.bernoulli``, ``poisson``,
``exceedance``, ``categorical``).

For each test and each ``alpha`` in (0.05, 0.01): the empirical false-alarm rate over null streams whose canary
share and common law move over time, and the power and delay on a stated shift at a 10% canary share. The
scenarios are those of ``tests/detectors/test_two_sample.py`` (from ``tests/support/two_sample.py``), with other
seeds and more streams. Delays
count canary observations up to the one that raised the alarm. Two more lines show the Poisson test on
overdispersed counts (where its guarantee does not hold) and the ordinal exceedance test on the same counts.

Run: ``python -m benchmarks.calibration_two_sample [null_streams]``. Prints one JSON line per test and alpha.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

import numpy as np

from detectors.base import REGISTRY
from tests.support import two_sample as scenarios

NULL_LENGTH = 4000
POWER_STREAMS, POWER_LENGTH, SHARE = 500, 30_000, 0.10


def measure(name: str, alpha: float, null_streams: int, **params: Any) -> dict[str, Any]:
    t = time.perf_counter()
    x, lab = scenarios.null_streams(name, np.random.default_rng(1001), null_streams, NULL_LENGTH)
    first, _ = REGISTRY[name](alpha=alpha, **params).run_streams(x, lab)
    null_seconds = time.perf_counter() - t
    fa = float(np.mean(first >= 0))
    t = time.perf_counter()
    x, lab = scenarios.shifted_streams(name, np.random.default_rng(2002), POWER_STREAMS, POWER_LENGTH, SHARE)
    first, _ = REGISTRY[name](alpha=alpha, **params).run_streams(x, lab)
    d = scenarios.delays(first, lab)
    return {"test": name, "alpha": alpha, "null_streams": null_streams, "null_length": NULL_LENGTH,
            "false_alarm_rate": round(fa, 4), "three_se_bound": round(scenarios.three_se(alpha, null_streams), 4),
            "shift": scenarios.SHIFTS[name], "canary_share": SHARE, "power_streams": POWER_STREAMS,
            "power_length": POWER_LENGTH, "power": round(float(np.mean(first >= 0)), 4),
            "median_delay": float(np.nanmedian(d)), "p90_delay": round(float(np.nanquantile(d, 0.9)), 1),
            "seconds": round(null_seconds + time.perf_counter() - t, 1)}


def overdispersed(alpha: float, streams: int) -> list[dict[str, Any]]:
    """Counts with variance three times the mean (negative binomial, mean 2), the same law for both arms."""
    rng = np.random.default_rng(3003)
    lab = scenarios.varying_share(rng, streams, NULL_LENGTH)
    x = rng.negative_binomial(1.0, 1.0 / 3.0, lab.shape).astype(np.float64)
    out = []
    for name, params in (("poisson_rate", {}), ("ordinal_exceedance", {"direction": "increase"})):
        first, _ = REGISTRY[name](alpha=alpha, **params).run_streams(x, lab)
        shift = scenarios.shifted_streams("poisson_rate", np.random.default_rng(2002), POWER_STREAMS, POWER_LENGTH,
                                          SHARE)
        hit, _ = REGISTRY[name](alpha=alpha, **params).run_streams(*shift)
        d = scenarios.delays(hit, shift[1])
        out.append({"test": name, "params": params, "alpha": alpha,
                    "null": "negative binomial counts, mean 2, variance 6, both arms", "null_streams": streams,
                    "null_length": NULL_LENGTH, "false_alarm_rate": round(float(np.mean(first >= 0)), 4),
                    "shift": scenarios.SHIFTS["poisson_rate"], "power": round(float(np.mean(hit >= 0)), 4),
                    "median_delay": float(np.nanmedian(d))})
    return out


def main(null_streams: int = 4000) -> list[dict[str, Any]]:
    rows = []
    for name in scenarios.NAMES:
        for alpha in (0.05, 0.01):
            rows.append(measure(name, alpha, null_streams))
            print(json.dumps(rows[-1]), flush=True)
    for row in overdispersed(0.05, min(null_streams, 2000)):
        rows.append(row)
        print(json.dumps(row), flush=True)
    assert all(r["false_alarm_rate"] <= r["three_se_bound"] for r in rows if "three_se_bound" in r)
    assert all(math.isfinite(r["median_delay"]) for r in rows)
    return rows


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
