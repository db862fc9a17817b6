"""Null and shifted streams for the two-sample tests (see tests/detectors/test_two_sample.py), also the
scenarios of benchmarks/calibration_two_sample.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.base import REGISTRY

Array = NDArray[np.float64]
Labels = NDArray[np.bool_]
Rng = np.random.Generator
TAU = 2.0 * math.pi
NAMES = ["bernoulli", "poisson_rate", "quantile_exceedance", "ordinal_exceedance", "categorical"]
CSAT = np.array([0.05, 0.07, 0.13, 0.30, 0.45])
CSAT_UNHAPPY = np.array([0.15, 0.15, 0.20, 0.25, 0.25])
INTENTS = np.array([0.40, 0.25, 0.15, 0.12, 0.08, 0.0])
INTENTS_OTHER = np.array([0.10, 0.20, 0.30, 0.20, 0.10, 0.10])


def three_se(alpha: float, n: int) -> float:
    return alpha + 3.0 * math.sqrt(alpha * (1.0 - alpha) / n)


def draw(rng: Rng, pmf: Array, shape: tuple[int, int]) -> NDArray[np.int64]:
    """Codes ``0..len(pmf)-1`` with the given probabilities."""
    return np.asarray((rng.random(shape)[..., None] > np.cumsum(pmf)[:-1]).sum(axis=-1), dtype=np.int64)


# -- null streams: the canary share and the common law move over time ---------------------------------------
def varying_share(rng: Rng, streams: int, n: int) -> Labels:
    """A canary share waving between 5% and 50% (period 500 to 3000 observations) and jumping at a random time."""
    t = np.arange(n)[None, :]
    period, phase = rng.uniform(500, 3000, (streams, 1)), rng.uniform(0, TAU, (streams, 1))
    share = 0.05 + 0.45 * (0.5 + 0.5 * np.sin(TAU * t / period + phase))
    jump = t > rng.integers(0, n, (streams, 1))
    share = np.where(jump, np.clip(share * rng.uniform(0.3, 1.5, (streams, 1)), 0.02, 0.6), share)
    return np.asarray(rng.random((streams, n)) < share)


def common_drift(rng: Rng, streams: int, n: int) -> tuple[Array, Array]:
    """A slow wave in [-1, 1] and a 0/1 step at a random time: a law change that hits both arms alike."""
    t = np.arange(n)[None, :]
    period, phase = rng.uniform(800, 4000, (streams, 1)), rng.uniform(0, TAU, (streams, 1))
    return np.sin(TAU * t / period + phase), (t > rng.integers(0, n, (streams, 1))).astype(np.float64)


def null_streams(name: str, rng: Rng, streams: int, n: int) -> tuple[Array, Labels]:
    lab = varying_share(rng, streams, n)
    wave, step = common_drift(rng, streams, n)
    shape = (streams, n)
    if name == "bernoulli":  # escalation rate 5-20%, +-60% over the day, doubled after an incident
        p = rng.uniform(0.05, 0.20, (streams, 1)) * (1.0 + 0.6 * wave) * (1.0 + step)
        x = (rng.random(shape) < p).astype(np.float64)
    elif name == "poisson_rate":  # tool calls 0.3-4 per conversation, moving alike
        lam = rng.uniform(0.3, 4.0, (streams, 1)) * (1.0 + 0.6 * wave) * (1.0 + step)
        x = rng.poisson(lam).astype(np.float64)
    elif name == "quantile_exceedance":  # latency: log-normal, median waving and jumping, 10 ms resolution
        x = np.round(rng.lognormal(0.6 * wave + 0.7 * step, 0.6), 2)
    elif name == "ordinal_exceedance":  # CSAT: a mix of two score laws whose weight moves
        unhappy = rng.random(shape) < 0.25 * (1.0 + wave) + 0.5 * step
        x = np.where(unhappy, draw(rng, CSAT_UNHAPPY, shape), draw(rng, CSAT, shape)) + 1.0
    elif name == "categorical":  # intents: a moving mix; category 5 comes with the step; a long tail of new codes
        other = rng.random(shape) < 0.25 * (1.0 + wave) + 0.5 * step
        codes = np.where(other, draw(rng, INTENTS_OTHER, shape), draw(rng, INTENTS, shape))
        tail = rng.random(shape) < 0.01
        x = np.where(tail, rng.integers(10, 200, shape), codes).astype(np.float64)
    else:
        raise ValueError(name)
    return x, lab


# -- stated shifts: canary worse, at a fixed canary share -------------------------------------------------
SHIFTS = {
    "bernoulli": "escalation 12% -> 24%",
    "poisson_rate": "tool calls per conversation 2.0 -> 2.4 (x1.2)",
    "quantile_exceedance": "latency log-normal(0, 0.6) x1.5",
    "ordinal_exceedance": "CSAT 1-5 (median 4): the canary loses a point 30% of the time",
    "categorical": "intent 3 of 5 doubled, 12% -> 24% (others scaled down)",
}


def shifted_streams(name: str, rng: Rng, streams: int, n: int, share: float = 0.10) -> tuple[Array, Labels]:
    shape = (streams, n)
    lab = np.asarray(rng.random(shape) < share)
    if name == "bernoulli":
        x = (rng.random(shape) < np.where(lab, 0.24, 0.12)).astype(np.float64)
    elif name == "poisson_rate":
        x = rng.poisson(np.where(lab, 2.4, 2.0)).astype(np.float64)
    elif name == "quantile_exceedance":
        x = rng.lognormal(0.0, 0.6, shape) * np.where(lab, 1.5, 1.0)
    elif name == "ordinal_exceedance":
        csat = draw(rng, CSAT, shape) + 1
        x = np.where(lab, np.maximum(csat - (rng.random(shape) < 0.3), 1), csat).astype(np.float64)
    elif name == "categorical":
        mix = INTENTS[:5]
        doubled = np.array([0.40, 0.25, 0.15, 0.24, 0.08]) / 1.12
        x = np.where(lab, draw(rng, doubled, shape), draw(rng, mix, shape)).astype(np.float64)
    else:
        raise ValueError(name)
    return x, lab


def delays(first: NDArray[np.int64], lab: Labels) -> Array:
    """Canary observations up to and including the one that raised each stream's alarm (NaN: no alarm)."""
    canary_seen = np.cumsum(lab, axis=1)
    return np.where(first >= 0, canary_seen[np.arange(lab.shape[0]), np.maximum(first, 0)], np.nan)


def make(name: str, **kwargs: Any) -> Any:
    return REGISTRY[name](**kwargs)
