"""Synthetic rollouts for the family-wise tests of the canary analysis (see tests/analysis/test_family_wise.py),
also the scenarios of benchmarks/calibration_family_wise.py."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from controller.analysis.canary import CanaryAnalysis
from controller.config import Analysis
from controller.ingest.buckets import Bucket
from controller.ingest.catalog import CATALOG

CHANNELS = ("webchat", "voice", "sms")
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "soylent")
RATE_METRICS = tuple(m for m, s in CATALOG.items() if s.kind == "rate")
VALUE_METRICS = (*(m for m, s in CATALOG.items() if s.kind == "value"), "eval:helpfulness")
BINS = 8
# one test per rate metric and two per value metric (p50 and the harmful tail)
POOLED_TESTS = len(RATE_METRICS) + 2 * len(VALUE_METRICS)
_CHANNEL_MIX = np.array([0.5, 0.3, 0.2])
_CHANNEL_SHARE = np.array([1.0, 0.3, 2.0])  # the canary's share in a channel, relative to the step's weight
_CHANNEL_RATE = np.array([0.6, 1.8, 1.0])  # rates of a channel, relative to the metric's base rate
_WEIGHTS = (0.10, 0.25, 0.50)  # the canary's weight over the thirds of a rollout


@dataclass(frozen=True)
class Law:
    """Per channel and tenant: the probability of each rate metric's counted outcome, and value bin laws."""

    rates: np.ndarray  # (channels, tenants, rate metrics)
    values: np.ndarray  # (channels, tenants, value metrics, BINS)

    def with_rate(self, metric: str, tenant: int, p: float) -> Law:
        rates = self.rates.copy()
        rates[:, tenant, RATE_METRICS.index(metric)] = p
        return Law(rates, self.values)


def healthy_law(tenants: int, seed: int = 0, escalation: float | None = None) -> Law:
    """Stratum-dependent laws (``escalation``, when given, is the same everywhere)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.02, 0.2, len(RATE_METRICS))
    base[RATE_METRICS.index("resolution_rate")] = 0.8
    by_channel = _CHANNEL_RATE[:, None, None]
    by_tenant = rng.uniform(0.7, 1.3, tenants)[None, :, None]
    rates = np.clip(base[None, None, :] * by_channel * by_tenant, 0.005, 0.95)
    if escalation is not None:
        rates[:, :, RATE_METRICS.index("escalation_rate")] = escalation
    values = rng.dirichlet(np.full(BINS, 2.0), (len(CHANNELS), tenants, len(VALUE_METRICS)))
    return Law(rates, values)


def rollout(rng: np.random.Generator, stable: Law, canary: Law, steps: int, volume: float,
            tenants: tuple[str, ...] = TENANTS, weights: tuple[float, ...] = _WEIGHTS
            ) -> Iterator[tuple[int, list[Bucket]]]:
    """Closed buckets of one rollout: ``volume`` interactions per step on average, tenants equally busy, the
    canary's weight going through ``weights`` in equal parts of the rollout."""
    mix = _CHANNEL_MIX[:, None] * np.full(len(tenants), 1.0 / len(tenants))[None, :]
    laws = (canary, stable)
    for step in range(steps):
        share = np.minimum(0.9, weights[len(weights) * step // steps] * _CHANNEL_SHARE)[:, None]
        n = rng.poisson(volume * mix[None] * np.stack([share, 1.0 - share]))  # (side, channel, tenant)
        out = []
        for side, (version, track) in enumerate((("v2", "canary"), ("v1", "stable"))):
            law = laws[side]
            harm = rng.binomial(n[side][:, :, None], law.rates).tolist()
            hist = rng.multinomial(n[side][:, :, None], law.values).tolist()
            counts = n[side].tolist()
            for c, channel in enumerate(CHANNELS):
                for t, tenant in enumerate(tenants):
                    k = counts[c][t]
                    if k:
                        out.append(Bucket(
                            version, track, channel, step, k,
                            rates={m: [k, harm[c][t][i]] for i, m in enumerate(RATE_METRICS)},
                            values={m: {b: x for b, x in enumerate(hist[c][t][j]) if x}
                                    for j, m in enumerate(VALUE_METRICS)},
                            tenant=tenant))
        yield step, out


def run(settings: Analysis, stream: Iterator[tuple[int, list[Bucket]]]) -> CanaryAnalysis:
    analysis = CanaryAnalysis("v1", "v2", settings)
    for start, buckets in stream:
        analysis.observe(start, buckets)
    return analysis


SEGMENTED = Analysis(alpha=0.2, segments=("channel", "tenant"), max_segments=4, stratum=0)


def null_rollouts(settings: Analysis, rollouts: int, steps: int, volume: float, seed: int
                  ) -> tuple[float, list[CanaryAnalysis]]:
    """The fraction of null rollouts with any test in alarm, and the last analysis of each."""
    rng = np.random.default_rng(seed)
    law = healthy_law(len(TENANTS), seed)
    done = [run(settings, rollout(rng, law, law, steps, volume)) for _ in range(rollouts)]
    return float(np.mean([any(t.alarm for t in a.tests.values()) for a in done])), done


def three_se(alpha: float, n: int) -> float:
    return alpha + 3.0 * math.sqrt(alpha * (1.0 - alpha) / n)


POWER_SEEDS, POWER_STEPS, POWER_VOLUME = 10, 120, 60
ACME_ONLY = ("acme", "globex", "initech", "umbrella", "hooli")  # acme is 20% of the traffic


def first_rollback(settings: Analysis, seed: int) -> tuple[int, list[str], CanaryAnalysis]:
    """Step and tests of the first critical alarm with enough samples (escalation 5% -> 30% in acme only)."""
    law = healthy_law(len(ACME_ONLY), seed, escalation=0.05)
    harm = law.with_rate("escalation_rate", 0, 0.30)
    a = CanaryAnalysis("v1", "v2", settings)
    stream = rollout(np.random.default_rng(seed), law, harm, POWER_STEPS, POWER_VOLUME, ACME_ONLY, (0.2,))
    for step, buckets in stream:
        acting = sorted(r.name for r in a.observe(step, buckets) if r.critical and r.enough_samples)
        if acting:
            return step, acting, a
    return POWER_STEPS, [], a
