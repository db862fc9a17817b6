"""Synthetic rollouts for the category-share tests (tests/analysis/test_categorical.py): closed buckets of
category counts only (no rates, no values), fed straight to :meth:`CanaryAnalysis.observe`.

The category mix differs by channel and the canary's share of traffic differs by channel and grows over the
rollout (as with ``setWeight`` steps), so only a comparison within channels stays calibrated; in a null
rollout the canary draws its categories from the stable version's mix in every channel.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from controller.analysis.canary import CanaryAnalysis
from controller.config import Analysis
from controller.ingest.buckets import Bucket

CHANNELS = ("webchat", "voice", "sms")
INTENTS = ("billing", "order_status", "refund", "tech_support", "account")
#: Per channel, the intent mix of a healthy version.
MIX = np.array([
    [0.20, 0.35, 0.15, 0.20, 0.10],
    [0.35, 0.10, 0.10, 0.35, 0.10],
    [0.10, 0.50, 0.20, 0.10, 0.10],
])
_CHANNEL_MIX = np.array([0.5, 0.3, 0.2])
_CHANNEL_SHARE = np.array([1.0, 0.3, 2.0])  # the canary's share in a channel, relative to the step's weight
_WEIGHTS = (0.10, 0.25, 0.50)


def shifted(mix: np.ndarray, intent: str, factor: float) -> np.ndarray:
    """``mix`` with one intent's share multiplied by ``factor`` in every channel, the others scaled to fit."""
    out = mix.copy()
    i = INTENTS.index(intent)
    out[:, i] = np.minimum(0.95, out[:, i] * factor)
    rest = np.delete(np.arange(len(INTENTS)), i)
    out[:, rest] *= ((1.0 - out[:, i]) / mix[:, rest].sum(axis=1))[:, None]
    return out


def rollout(rng: np.random.Generator, steps: int, volume: float, canary_mix: np.ndarray = MIX,
            stable_mix: np.ndarray = MIX, field: str = "intent") -> Iterator[tuple[int, list[Bucket]]]:
    """Closed buckets of one rollout, one per version and channel, ``volume`` interactions per step on average."""
    for step in range(steps):
        share = np.minimum(0.9, _WEIGHTS[len(_WEIGHTS) * step // steps] * _CHANNEL_SHARE)
        n = rng.poisson(volume * _CHANNEL_MIX[None, :] * np.stack([share, 1.0 - share]))  # (side, channel)
        out = []
        for side, (version, track, mix) in enumerate((("v2", "canary", canary_mix), ("v1", "stable", stable_mix))):
            for c, channel in enumerate(CHANNELS):
                k = int(n[side, c])
                if k:
                    counts = rng.multinomial(k, mix[c]).tolist()
                    out.append(Bucket(version, track, channel, step, k,
                                      categories={field: {v: x for v, x in zip(INTENTS, counts, strict=True) if x}}))
        yield step, out


def run(settings: Analysis, buckets: Iterator[tuple[int, list[Bucket]]]) -> tuple[CanaryAnalysis, int | None]:
    """The analysis after the rollout, and the step of its first categorical alarm (None: none)."""
    a = CanaryAnalysis("v1", "v2", settings)
    first = None
    for start, bs in buckets:
        if any(a.is_categorical(r.name) for r in a.observe(start, bs)) and first is None:
            first = start
    return a, first
