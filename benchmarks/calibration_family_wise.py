"""Family-wise false alarms and power of the segment tests (``spec.analysis.segments: [channel, tenant]``).

The scenarios are those of ``tests/analysis/test_family_wise.py`` (from ``tests/support/family_wise.py``), with
more rollouts and other seeds:

* calibration: healthy rollouts, every catalog metric plus one evaluation (25 pooled tests), 3 channels,
  6 tenants with ``maxSegments: 4`` (4 tenants apart and ``other``), so 225 tests per rollout; the canary's
  weight steps from 10% to 50% and differs by channel, and rates differ by channel and tenant. For each
  ``alpha``: the share of rollouts with any test in alarm, against ``alpha + 3 SE``, and which kinds of test
  alarmed. ``pooled_only_rate`` is, on the same rollouts, the share a rollout without segments would have
  alarmed: its pooled tests hold twice the level (the pooled share of the budget is ``1 - SEGMENT_SHARE``),
  so it is read from the same statistics;
* power: escalation 5% -> 30% in one tenant of five (20% of the traffic), 20% canary weight, 60 interactions
  per step: the share of rollouts rolled back within the horizon and the step of the rollback, with and
  without segments, and the share of rollbacks acted on by the tenant's own test.

Run: ``python -m benchmarks.calibration_family_wise [rollouts] [steps]`` (default 2000 rollouts of 30 steps).
Prints one JSON line per alpha and per power setting; runs on two processes (about 14 minutes on two cores).
"""

from __future__ import annotations

import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from controller.analysis.canary import SEGMENT_SHARE
from controller.config import Analysis
from tests.support import family_wise as scenarios

VOLUME = 90  # interactions per step of the calibration rollouts (the test runs shorter ones)
POWER_ROLLOUTS = 200


def null_chunk(alpha: float, first: int, count: int, steps: int) -> list[dict[str, Any]]:
    """One summary per rollout ``first .. first + count - 1`` (each its own seed)."""
    settings = Analysis(alpha=alpha, segments=("channel", "tenant"), max_segments=4)
    law = scenarios.healthy_law(len(scenarios.TENANTS), seed=5000)
    out = []
    for r in range(first, first + count):
        stream = scenarios.rollout(np.random.default_rng(10_000 + r), law, law, steps, VOLUME)
        a = scenarios.run(settings, stream)
        alarmed = [n for n, t in a.tests.items() if t.alarm]
        pooled_only = any(t.p_value <= t.alpha / (1 - SEGMENT_SHARE)
                          for n, t in a.tests.items() if n not in a.segment_of)
        out.append({"tests": len(a.tests), "levels": math.fsum(t.alpha for t in a.tests.values()),
                    "any": bool(alarmed), "pooled_only": pooled_only,
                    "pooled": any(n not in a.segment_of for n in alarmed),
                    "channel": any(a.segment_of.get(n, ("",))[0] == "channel" for n in alarmed),
                    "tenant": any(a.segment_of.get(n, ("",))[0] == "tenant" for n in alarmed)})
    return out


def calibration(pool: ProcessPoolExecutor, alpha: float, rollouts: int, steps: int) -> dict[str, Any]:
    t = time.perf_counter()
    chunk = 50
    futures = [pool.submit(null_chunk, alpha, i, min(chunk, rollouts - i), steps) for i in range(0, rollouts, chunk)]
    rows = [r for f in futures for r in f.result()]
    rate = float(np.mean([r["any"] for r in rows]))
    return {"scenario": "null", "alpha": alpha, "rollouts": rollouts, "steps": steps, "interactions_per_step": VOLUME,
            "tests_per_rollout": int(np.median([r["tests"] for r in rows])),
            "max_sum_of_levels": round(max(r["levels"] for r in rows), 6),
            "false_alarm_rate": round(rate, 4), "three_se_bound": round(scenarios.three_se(alpha, rollouts), 4),
            "ci95": [round(x, 4) for x in wilson(rate, rollouts)],
            "by_kind": {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ("pooled", "channel", "tenant")},
            "pooled_only_rate": round(float(np.mean([r["pooled_only"] for r in rows])), 4),
            "seconds": round(time.perf_counter() - t, 1)}


def power_chunk(alpha: float, segments: tuple[str, ...], first: int, count: int) -> list[tuple[int, bool]]:
    out = []
    for seed in range(first, first + count):
        step, acting, _ = scenarios.first_rollback(Analysis(alpha=alpha, segments=segments), 20_000 + seed)
        out.append((step if acting else -1, "escalation_rate[tenant=acme]" in acting))
    return out


def power(pool: ProcessPoolExecutor, alpha: float, segments: tuple[str, ...]) -> dict[str, Any]:
    t = time.perf_counter()
    chunk = 25
    futures = [pool.submit(power_chunk, alpha, segments, i, chunk) for i in range(0, POWER_ROLLOUTS, chunk)]
    rows = [r for f in futures for r in f.result()]
    steps = np.array([s for s, _ in rows], dtype=np.float64)
    hit = steps >= 0
    return {"scenario": "escalation 5% -> 30% in 1 tenant of 5", "alpha": alpha, "segments": list(segments),
            "rollouts": POWER_ROLLOUTS, "horizon_steps": scenarios.POWER_STEPS,
            "interactions_per_step": scenarios.POWER_VOLUME, "canary_weight": 0.2,
            "rolled_back": round(float(hit.mean()), 4),
            "median_step": float(np.median(steps[hit])) if hit.any() else None,
            "p90_step": round(float(np.quantile(steps[hit], 0.9)), 1) if hit.any() else None,
            "by_tenant_test": round(float(np.mean([by for s, by in rows if s >= 0])), 4) if hit.any() else None,
            "seconds": round(time.perf_counter() - t, 1)}


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main(rollouts: int = 2000, steps: int = 30) -> list[dict[str, Any]]:
    rows = []
    with ProcessPoolExecutor(max_workers=2) as pool:
        for alpha in (0.01, 0.05):
            rows.append(calibration(pool, alpha, rollouts, steps))
            print(json.dumps(rows[-1]), flush=True)
        for alpha in (0.01, 0.05):
            for segments in ((), ("channel", "tenant")):
                rows.append(power(pool, alpha, segments))
                print(json.dumps(rows[-1]), flush=True)
    assert all(r["false_alarm_rate"] <= r["three_se_bound"] for r in rows if r["scenario"] == "null")
    assert all(r["max_sum_of_levels"] <= r["alpha"] for r in rows if r["scenario"] == "null")
    return rows


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
