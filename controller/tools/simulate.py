"""Synthetic agent traffic with fault injection: the load generator behind ``vigil simulate`` and the demo.

Every generated event is a CloudEvents 1.0 structured JSON object whose ``data`` follows the event contract
of :mod:`controller.contracts.events` (no message text, ever). Traffic is built in two layers:

* a *conversation skeleton*: conversations arrive as a Poisson process whose rate follows a sinusoidal
  "daily" wave; each has a channel, tenant, intent and 1-6 turns separated by channel-specific think times.
  The skeleton starts before ``start`` (a warm-up) so that a run begins in steady state, with conversations
  already in flight, instead of with a burst of first turns;
* per-turn *attributes* (track, outcome, latency, tokens, guardrails, tools, feedback...), drawn when the
  turn is emitted, so the track follows the canary weight *at that moment* (per-request routing, as with a
  weighted service mesh) and faults apply by event time and track (and, for a fault given a ``tenant``,
  to that tenant's traffic only).

Healthy stable and canary turns are drawn from the same distributions, so any difference a detector finds
comes from an injected :class:`Fault`. Only uniform and normal draws in fixed-width rows are taken from
independent numpy streams, so the output for a given seed does not depend on how it is chunked (in
particular a constant ``weight_fn`` gives the same events as the configured ``canary_weight``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import math
import numbers
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
import numpy as np

__all__ = [
    "DEFAULT_START",
    "FAULT_KINDS",
    "Fault",
    "SimConfig",
    "generate",
    "produce",
    "register",
    "write_jsonl",
]

#: Default start of event time (2026-11-26T00:00:00Z), fixed so that files are reproducible.
DEFAULT_START: float = datetime(2026, 11, 26, tzinfo=UTC).timestamp()

#: Fault kinds and the default magnitude of each (a multiplier of the affected rate or value).
FAULT_KINDS: dict[str, float] = {
    "escalation": 3.0,  # escalation rate x3: 12% -> 36%
    "error": 5.0,  # error rate x5: 1.5% -> 7.5%
    "guardrail": 5.0,  # guardrail block rate x5: 2% -> 10%
    "latency": 2.0,  # latency and TTFT x2
    "output_tokens": 2.0,  # output tokens x2 (and with them cost and latency)
    "csat": 3.0,  # share of CSAT 1-2 x3, the rest scaled down
    "length": 5.0,  # finish reason "length" x5: 2% -> 10%
    "incident": 3.0,  # upstream incident on both versions: latency x3 and error rate x3
    "tool_error": 5.0,  # tool call error rate x5: 3% -> 15% of calls
    "abandonment": 3.0,  # abandonment rate x3: ~5% -> ~15%
    "evaluation": 0.9,  # helpfulness score x0.9 (higher is better, so < 1 is the harm): ~0.78 -> ~0.70
    "intent_shift": 2.0,  # share of the "tech_support" intent x2 in each channel, the others scaled down
    "model_switch": 1.0,  # share (at most 1) of turns reporting the other model, _SWITCHED_MODEL
}
_TARGETS = ("canary", "stable", "both")

# --- traffic model ---------------------------------------------------------------------------------------
# Index order of the per-channel tables below.
CHANNELS = ("webchat", "voice", "whatsapp", "sms", "email", "rcs")
_CHANNEL_MIX = np.array([0.35, 0.20, 0.18, 0.12, 0.10, 0.05])
# Voice escalates and abandons more (callers ask for a human and hang up); the mix averages to ~12% / ~5%.
_ESCALATION = np.array([0.11, 0.18, 0.11, 0.10, 0.09, 0.10])
_ABANDON = np.array([0.045, 0.07, 0.04, 0.06, 0.03, 0.05])
_ERROR = 0.015
_BLOCK = 0.02
_WARN = 0.03
_LENGTH = 0.02
_TOOL_ERROR = 0.03
# Spoken answers are short and the voice stack is tuned for time-to-first-token; e-mail answers are long.
_TTFT_MEDIAN_MS = np.array([260.0, 170.0, 260.0, 260.0, 300.0, 260.0])
_OUTPUT_MEDIAN = np.array([190.0, 110.0, 180.0, 150.0, 320.0, 180.0])
_MAX_OUTPUT = np.array([1024, 512, 1024, 512, 2048, 1024])
_MS_PER_TOKEN = 2.6
_TIMEOUT_MS = np.array([15000.0, 8000.0, 15000.0, 15000.0, 30000.0, 15000.0])
# Think time between turns: median and cap in seconds (the caps bound the warm-up).
_GAP_MEDIAN_S = np.array([25.0, 8.0, 50.0, 80.0, 300.0, 40.0])
_GAP_CAP_S = np.array([240.0, 60.0, 600.0, 600.0, 900.0, 300.0])
_TURN_PROBS = np.array([0.35, 0.25, 0.17, 0.11, 0.07, 0.05])  # turns 1..6
_MEAN_TURNS = float(np.dot(np.arange(1, len(_TURN_PROBS) + 1), _TURN_PROBS))
_WARMUP_S = float((len(_TURN_PROBS) - 1) * _GAP_CAP_S.max())

INTENTS = ("billing", "order_status", "refund", "tech_support", "account", "general")
_INTENT_MIX = np.array([  # rows follow CHANNELS
    [0.18, 0.27, 0.13, 0.17, 0.15, 0.10],
    [0.26, 0.15, 0.10, 0.24, 0.17, 0.08],
    [0.14, 0.36, 0.14, 0.12, 0.12, 0.12],
    [0.12, 0.42, 0.10, 0.10, 0.14, 0.12],
    [0.20, 0.12, 0.26, 0.16, 0.16, 0.10],
    [0.15, 0.35, 0.14, 0.12, 0.12, 0.12],
])
# Tools an intent calls, in call order, and the distribution of the number of calls (0..3).
_TOOLS = (
    ("lookup_account", "get_invoice", "apply_credit"),
    ("get_order", "track_shipment", "get_order"),
    ("get_order", "check_refund_policy", "create_refund"),
    ("search_kb", "run_diagnostics", "search_kb"),
    ("lookup_account", "update_account", "lookup_account"),
    ("search_kb", "search_kb", "search_kb"),
)
_TOOL_COUNT_CDF = np.cumsum(np.array([
    [0.30, 0.45, 0.20, 0.05],
    [0.15, 0.50, 0.30, 0.05],
    [0.10, 0.35, 0.40, 0.15],
    [0.35, 0.45, 0.15, 0.05],
    [0.30, 0.50, 0.15, 0.05],
    [0.70, 0.25, 0.05, 0.00],
]), axis=1)
_TOOL_ERRORS = ("timeout", "http_500", "invalid_arguments")
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "soylent")
_TENANT_CDF = np.cumsum([0.32, 0.22, 0.16, 0.12, 0.10, 0.08])
_ERROR_TYPES = ("timeout", "rate_limit", "server_error", "invalid_response")
_ERROR_TYPE_CDF = np.cumsum([0.45, 0.20, 0.25, 0.10])
_OUTCOMES = ("resolved", "escalated", "abandoned", "error")
# CSAT 1..5 given the outcome: resolved turns mostly score 4-5, the others spread low.
_CSAT_RESOLVED = np.array([0.01, 0.02, 0.07, 0.30, 0.60])
_CSAT_UNRESOLVED = np.array([0.15, 0.20, 0.25, 0.25, 0.15])
_P_THUMBS_UP = np.array([0.0, 0.0, 0.10, 0.55, 0.85])  # by CSAT 1..5
_P_THUMBS_DOWN = np.array([0.85, 0.70, 0.20, 0.02, 0.0])
_HELPFULNESS = np.array([0.84, 0.55, 0.45, 0.30])  # mean by outcome index
_FEEDBACK_SHARE = 0.30
_SHIFTED_INTENT = INTENTS.index("tech_support")  # the intent an intent_shift fault makes more frequent
_SWITCHED_MODEL = "gpt-4.1-mini"  # the model a model_switch fault makes the canary report
_PRICE_IN, _PRICE_OUT = 0.15e-6, 0.60e-6  # USD per token (gpt-4o-mini list price)

# Columns of the per-turn uniform and normal draws (fixed widths keep the streams chunk-invariant).
_U_TRACK, _U_OUTCOME, _U_ERROR_TYPE, _U_GUARD, _U_GUARD_SCORE, _U_LENGTH, _U_NTOOLS = range(7)
_U_TOOL_ERR = 7  # 7, 8, 9
_U_TOOL_ERR_TYPE, _U_FEEDBACK, _U_CSAT, _U_THUMBS, _U_FAIL_MS = range(10, 15)
_U_WIDTH = 15
_Z_TTFT, _Z_OUT, _Z_GEN = 0, 1, 2
_Z_TOOL = 3  # 3, 4, 5
_Z_INPUT, _Z_HELP, _Z_SENT = 6, 7, 8
_Z_WIDTH = 9
# Columns of a fourth stream, for the features added later (the first three streams keep their output).
_X_CANARY, _X_MODEL, _X_INTENT, _X_EVAL = range(4)
_X_WIDTH = 4
# Skeleton draws per candidate conversation: arrival gap, thinning, channel, tenant, intent, turns, id, gaps.
_C_GAP, _C_ACCEPT, _C_CHANNEL, _C_TENANT, _C_INTENT, _C_TURNS, _C_ID = range(7)
_C_WIDTH = 7 + len(_TURN_PROBS) - 1

_WEIGHT_REFRESH_S = 0.2  # event time between two reads of a weight_fn: how fast traffic follows it


# --- configuration ---------------------------------------------------------------------------------------
def _number(value: object) -> str:
    """Format a float so that ``float()`` gives it back exactly, without a noisy ``.0``."""
    assert isinstance(value, int | float)
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


@dataclass(frozen=True)
class Fault:
    """A degradation injected into the generated traffic from ``onset`` seconds after the start.

    ``magnitude`` and ``target`` default per kind (see :data:`FAULT_KINDS`); an ``incident`` always hits
    both versions, which is exactly what a controller must *not* roll back for. With a ``tenant`` the fault
    hits that tenant's interactions only, a harm that a test pooled over tenants dilutes.

    >>> Fault.parse("escalation:magnitude=3,onset=60,ramp=30")  # doctest: +NORMALIZE_WHITESPACE
    Fault(kind='escalation', onset=60.0, magnitude=3.0, ramp=30.0, duration=None, target='canary',
          tenant=None, version=None)
    """

    #: One of :data:`FAULT_KINDS`.
    kind: str
    #: Seconds after the start of the run when the fault begins.
    onset: float = 0.0
    #: Multiplier of the affected rate or value (None: the kind's default; < 1 means an improvement, except
    #: for ``evaluation``, a multiplier of the score, where < 1 is the harm; for ``model_switch``, the share
    #: of turns reporting the other model, at most 1; for ``intent_shift``, the multiplier of one intent's share).
    magnitude: float | None = None
    #: Seconds over which the effect grows linearly from none to full (0: a step).
    ramp: float = 0.0
    #: Seconds the fault lasts from its onset (None: until the end of the run).
    duration: float | None = None
    #: Which version is affected: "canary", "stable" or "both" (None: canary, or both for an incident).
    target: str | None = None
    #: Which tenant is affected: one of :data:`TENANTS` (None: every tenant).
    tenant: str | None = None
    #: Which canary version is affected, with several canaries (None: every canary); needs target canary.
    version: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}; got {self.kind!r}")
        # Frozen: fill the per-kind defaults in place so that equality and repr show the effective values.
        if self.magnitude is None:
            object.__setattr__(self, "magnitude", FAULT_KINDS[self.kind])
        if self.target is None:
            object.__setattr__(self, "target", "both" if self.kind == "incident" else "canary")
        for name in ("onset", "magnitude", "ramp", "duration"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number; got {value!r}")
            object.__setattr__(self, name, float(value))
        assert self.magnitude is not None
        if not math.isfinite(self.onset) or self.onset < 0:
            raise ValueError(f"onset must be a finite number >= 0; got {self.onset!r}")
        if not math.isfinite(self.magnitude) or self.magnitude <= 0:
            raise ValueError(f"magnitude must be > 0 (and finite); got {self.magnitude!r}")
        if not math.isfinite(self.ramp) or self.ramp < 0:
            raise ValueError(f"ramp must be a finite number >= 0; got {self.ramp!r}")
        if self.duration is not None and not (self.duration > 0):
            raise ValueError(f"duration must be > 0 (or None for until the end); got {self.duration!r}")
        if self.target not in _TARGETS:
            raise ValueError(f"target must be one of {', '.join(_TARGETS)}; got {self.target!r}")
        if self.kind == "incident" and self.target != "both":
            raise ValueError(f"target of an incident must be 'both' (it is upstream); got {self.target!r}")
        if self.tenant is not None and self.tenant not in TENANTS:
            raise ValueError(f"tenant must be one of {', '.join(TENANTS)} (or None: all); got {self.tenant!r}")
        if self.kind == "model_switch" and self.magnitude > 1:
            raise ValueError(f"magnitude of a model_switch is a share of turns, at most 1; got {self.magnitude!r}")
        if self.version is not None and (not self.version or self.target != "canary"):
            raise ValueError(f"version needs a non-empty label and target canary; got {self.version!r}")

    @classmethod
    def parse(cls, text: str) -> Fault:
        """Parse a CLI spec: ``kind`` or ``kind:key=value,...``.

        Keys: onset, magnitude, ramp, duration (``none``: until the end), target, tenant, version.

        >>> Fault.parse("incident:onset=30,duration=60").target
        'both'
        """
        kind, _, params = text.strip().partition(":")
        kwargs: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in params.split(","))):
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                raise ValueError(f"fault parameter must be key=value; got {item!r} in {text!r}")
            if key in kwargs:
                raise ValueError(f"fault parameter {key} given twice in {text!r}")
            if key in ("target", "tenant", "version"):
                kwargs[key] = value
            elif key in ("onset", "magnitude", "ramp", "duration"):
                if key == "duration" and value.lower() in ("none", "inf", ""):
                    kwargs[key] = None
                    continue
                try:
                    kwargs[key] = float(value)
                except ValueError:
                    raise ValueError(f"{key} must be a number; got {value!r} in {text!r}") from None
            else:
                raise ValueError(f"unknown fault parameter {key!r} in {text!r}; "
                                 "use onset, magnitude, ramp, duration, target, tenant, version")
        return cls(kind.strip(), **kwargs)

    def spec(self) -> str:
        """The CLI spec of this fault; ``Fault.parse(f.spec()) == f``."""
        parts = [f"onset={_number(self.onset)}", f"magnitude={_number(self.magnitude)}",
                 f"ramp={_number(self.ramp)}"]
        if self.duration is not None:
            parts.append(f"duration={_number(self.duration)}")
        parts.append(f"target={self.target}")
        if self.tenant is not None:
            parts.append(f"tenant={self.tenant}")
        if self.version is not None:
            parts.append(f"version={self.version}")
        return f"{self.kind}:{','.join(parts)}"

    __str__ = spec

    def strength(self, rel: np.ndarray) -> np.ndarray:
        """Fraction of the full effect (0..1) at ``rel`` seconds after the start of the run."""
        on = rel >= self.onset
        if self.duration is not None:
            on &= rel < self.onset + self.duration
        if self.ramp > 0:
            return np.where(on, np.clip((rel - self.onset) / self.ramp, 0.0, 1.0), 0.0)
        return on.astype(float)


@dataclass(frozen=True)
class SimConfig:
    """What to simulate: one agent with a stable and a canary version, and the faults to inject."""

    #: Agent name (``data.agent``); also the default Kafka key.
    agent: str = "support-bot"
    #: Version label of the stable track.
    stable_version: str = "v1"
    #: Version label of the canary track.
    canary_version: str = "v2"
    #: Model name reported by both versions.
    model: str = "gpt-4o-mini"
    #: Mean event rate over a wave period, in events per second of event time.
    rate: float = 50.0
    #: Length of the run in seconds of event time (may be ``math.inf`` for an endless stream).
    duration: float = 300.0
    #: Event time of the start of the run, in epoch seconds (fixed by default for reproducible output).
    start: float = DEFAULT_START
    #: Percent (0-100) of turns routed to the canary, unless a ``weight_fn`` overrides it.
    canary_weight: float = 10.0
    #: Seed of numpy's random generator; the same config gives the same events.
    seed: int = 0
    #: Period of the sinusoidal rate wave in seconds (a day by default, so short runs see a ~constant rate).
    wave_period: float = 86400.0
    #: Relative amplitude of the wave, in [0, 1): the rate swings between rate*(1-a) and rate*(1+a).
    wave_amplitude: float = 0.3
    #: Faults to inject.
    faults: tuple[Fault, ...] = ()
    #: Further canary versions sharing the canary traffic evenly with ``canary_version`` (track ``canary``).
    extra_canary_versions: tuple[str, ...] = ()
    #: Share of interactions that carry ``feedback`` (CSAT, thumbs, sentiment).
    feedback_share: float = _FEEDBACK_SHARE
    #: Share of non-error interactions that carry the ``helpfulness`` evaluation.
    evaluation_share: float = 1.0

    def __post_init__(self) -> None:
        for name in ("agent", "stable_version", "canary_version", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string; got {value!r}")
        if self.stable_version == self.canary_version:
            raise ValueError(f"canary_version must differ from stable_version ({self.stable_version!r})")
        if not math.isfinite(self.rate) or self.rate <= 0:
            raise ValueError(f"rate must be a finite number > 0; got {self.rate!r}")
        if not (self.duration > 0):
            raise ValueError(f"duration must be > 0; got {self.duration!r}")
        if not math.isfinite(self.start):
            raise ValueError(f"start must be finite epoch seconds; got {self.start!r}")
        if not (0 <= self.canary_weight <= 100):
            raise ValueError(f"canary_weight must be a percentage in [0, 100]; got {self.canary_weight!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got {self.seed!r}")
        if not math.isfinite(self.wave_period) or self.wave_period <= 0:
            raise ValueError(f"wave_period must be a finite number > 0; got {self.wave_period!r}")
        if not (0 <= self.wave_amplitude < 1):
            raise ValueError(f"wave_amplitude must be in [0, 1); got {self.wave_amplitude!r}")
        for name in ("feedback_share", "evaluation_share"):
            if not (0 <= getattr(self, name) <= 1):
                raise ValueError(f"{name} must be a share in [0, 1]; got {getattr(self, name)!r}")
        extra = tuple(self.extra_canary_versions)
        canaries = (self.canary_version, *extra)
        if not all(isinstance(v, str) and v for v in extra) or len(set(canaries)) < len(canaries) \
                or self.stable_version in canaries:
            raise ValueError(f"extra_canary_versions must be distinct non-empty labels, other than the stable "
                             f"and canary versions; got {extra!r}")
        object.__setattr__(self, "extra_canary_versions", extra)
        faults = tuple(self.faults)  # accept a list, keep the config hashable
        for fault in faults:
            if not isinstance(fault, Fault):
                raise ValueError(f"faults must contain Fault objects; got {fault!r}")
            if math.isfinite(self.duration) and fault.onset >= self.duration:
                raise ValueError(f"onset {_number(fault.onset)} s of fault {fault.spec()} lies at or beyond the "
                                 f"run's duration ({_number(self.duration)} s): the fault would never start")
            if fault.version is not None and fault.version not in canaries:
                raise ValueError(f"faults: version {fault.version!r} of {fault.spec()} is not a canary version "
                                 f"({', '.join(canaries)})")
        object.__setattr__(self, "faults", faults)

    @property
    def canary_versions(self) -> tuple[str, ...]:
        """Every canary version: ``canary_version`` and the extra ones."""
        return (self.canary_version, *self.extra_canary_versions)


# --- generation ------------------------------------------------------------------------------------------
class _Turns(NamedTuple):
    """A time-sorted batch of skeleton turns (parallel arrays)."""

    t: np.ndarray  # event time, epoch seconds
    seq: np.ndarray  # conversation sequence number (tie-break for a stable order)
    turn: np.ndarray  # 1-based
    channel: np.ndarray
    tenant: np.ndarray
    intent: np.ndarray
    cid: np.ndarray  # conversation id as an integer

    def take(self, index: np.ndarray | slice) -> _Turns:
        return _Turns(*(column[index] for column in self))

    @staticmethod
    def concat(parts: list[_Turns]) -> _Turns:
        return _Turns(*(np.concatenate(columns) for columns in zip(*parts, strict=True)))


def _empty_turns() -> _Turns:
    return _Turns(np.empty(0), *(np.empty(0, dtype=np.int64) for _ in range(6)))


def _skeleton(config: SimConfig, rng: np.random.Generator) -> Iterator[_Turns]:
    """Yield the turns in ``[start, start + duration)`` in time order, in batches.

    Conversation starts are drawn by thinning a homogeneous Poisson process at the peak rate; a batch of
    turns is final once it lies before the last candidate start, since every later conversation starts
    after it.
    """
    start, end = config.start, config.start + config.duration
    amp, omega = config.wave_amplitude, 2 * math.pi / config.wave_period
    peak = config.rate * (1 + amp) / _MEAN_TURNS  # conversations per second at the top of the wave
    # ~60 s of candidates per block, bounded: the output does not depend on it (draws are row-sequential).
    block = int(min(65536, max(1024, peak * 60)))
    turn_cdf = np.cumsum(_TURN_PROBS)
    mix_cdf = np.cumsum(_CHANNEL_MIX)
    intent_cdf = np.cumsum(_INTENT_MIX, axis=1)
    clock = start - _WARMUP_S
    seq0 = 0
    pending = _empty_turns()
    while True:
        u = rng.random((block, _C_WIDTH))
        # 1 - u lies in (0, 1], so the log is finite.
        arrivals = clock + np.cumsum(-np.log(1.0 - u[:, _C_GAP]) / peak)
        clock = float(arrivals[-1])
        accept = u[:, _C_ACCEPT] * (1 + amp) < 1 + amp * np.sin(omega * (arrivals - start))
        channel = np.searchsorted(mix_cdf, u[:, _C_CHANNEL] * mix_cdf[-1], side="right")
        nturns = 1 + np.searchsorted(turn_cdf, u[:, _C_TURNS] * turn_cdf[-1], side="right")
        # Most warm-up conversations end before the start: drop them before the costlier work.
        accept &= arrivals + (nturns - 1) * _GAP_CAP_S[channel] >= start
        seqs = seq0 + np.nonzero(accept)[0]
        seq0 += block
        u, s, channel, nturns = u[accept], arrivals[accept], channel[accept], nturns[accept]
        tenant = np.searchsorted(_TENANT_CDF, u[:, _C_TENANT] * _TENANT_CDF[-1], side="right")
        icdf = intent_cdf[channel]
        intent = (icdf < (u[:, _C_INTENT] * icdf[:, -1])[:, None]).sum(axis=1)
        cid = (u[:, _C_ID] * 2.0**52).astype(np.int64)
        # Think time: 2 s floor plus an exponential with the channel's median, capped.
        med = _GAP_MEDIAN_S[channel][:, None]
        gaps = np.minimum(2.0 - np.log(1.0 - u[:, _C_ID + 1:]) * (med / math.log(2)),
                          _GAP_CAP_S[channel][:, None])
        times = np.concatenate([s[:, None], s[:, None] + np.cumsum(gaps, axis=1)], axis=1)
        turn_no = np.broadcast_to(np.arange(1, times.shape[1] + 1), times.shape)
        keep = (turn_no <= nturns[:, None]) & (times >= start) & (times < end)
        rows, cols = np.nonzero(keep)
        fresh = _Turns(times[rows, cols], seqs[rows], turn_no[rows, cols], channel[rows], tenant[rows],
                       intent[rows], cid[rows])
        merged = _Turns.concat([pending, fresh])
        merged = merged.take(np.lexsort((merged.turn, merged.seq, merged.t)))
        if clock >= end:
            if len(merged.t):
                yield merged
            return
        cut = int(np.searchsorted(merged.t, clock, side="left"))
        if cut:
            yield merged.take(slice(0, cut))
        pending = merged.take(slice(cut, None))


def _ids(config: SimConfig) -> str:
    """Prefix of event ids: distinct across agents, seeds and starts, stable for a given config."""
    digest = hashlib.sha1(f"{config.agent}|{config.seed}|{config.start!r}".encode()).hexdigest()
    return f"{digest[:10]}-"


def _multipliers(config: SimConfig, rel: np.ndarray, canary: np.ndarray, tenant: np.ndarray,
                 which: np.ndarray) -> dict[str, np.ndarray]:
    """Per-turn multiplier of each affected quantity, the product over the active faults."""
    out: dict[str, np.ndarray] = {}
    for fault in config.faults:
        assert fault.magnitude is not None
        strength = fault.strength(rel)
        if fault.target == "canary":
            strength = strength * canary
        elif fault.target == "stable":
            strength = strength * ~canary
        if fault.tenant is not None:
            strength = strength * (tenant == TENANTS.index(fault.tenant))
        if fault.version is not None:
            strength = strength * (which == config.canary_versions.index(fault.version))
        if fault.kind in ("intent_shift", "model_switch"):  # a share of the turns, not a multiplier
            out[fault.kind] = np.maximum(out.get(fault.kind, 0.0), strength * (
                fault.magnitude if fault.kind == "model_switch" else 1.0))
            out[f"{fault.kind}_magnitude"] = np.full(len(rel), fault.magnitude)
            continue
        factor = 1.0 + (fault.magnitude - 1.0) * strength
        for kind in ("latency", "error") if fault.kind == "incident" else (fault.kind,):
            out[kind] = out[kind] * factor if kind in out else factor
    return out


def _attributes(config: SimConfig, turns: _Turns, weight: float, u: np.ndarray, z: np.ndarray, x: np.ndarray,
                first: int, prefix: str) -> Iterator[tuple[float, dict[str, Any]]]:
    """Draw the per-turn attributes of a batch and yield ``(event time, CloudEvent dict)`` pairs."""
    n = len(turns.t)
    ch = turns.channel
    canary = u[:, _U_TRACK] < weight / 100.0
    which = np.where(canary, (x[:, _X_CANARY] * len(config.canary_versions)).astype(np.int64), -1)
    rel = turns.t - config.start
    mult = _multipliers(config, rel, canary, turns.tenant, which)
    ones = np.ones(n)
    m_lat = mult.get("latency", ones)
    intent = turns.intent
    if "intent_shift" in mult:
        # Replace the drawn intent by the shifted one with the probability that multiplies its share.
        p0 = _INTENT_MIX[ch, _SHIFTED_INTENT]
        p1 = np.minimum(0.95, p0 * mult["intent_shift_magnitude"])
        q = np.clip((p1 - p0) / (1 - p0), 0.0, 1.0) * mult["intent_shift"]
        intent = np.where(x[:, _X_INTENT] < q, _SHIFTED_INTENT, intent)
    switched = x[:, _X_MODEL] < mult["model_switch"] if "model_switch" in mult else np.zeros(n, dtype=bool)

    # Outcome: error, then escalation, then abandonment (slow service makes people hang up).
    p_err = _ERROR * mult.get("error", ones)
    p_esc = _ESCALATION[ch] * mult.get("escalation", ones)
    p_ab = _ABANDON[ch] * np.sqrt(m_lat) * mult.get("abandonment", ones)
    scale = np.minimum(1.0, 0.98 / (p_err + p_esc + p_ab))  # keep the sum a probability
    p_err, p_esc, p_ab = p_err * scale, p_esc * scale, p_ab * scale
    uo = u[:, _U_OUTCOME]
    outcome = np.select([uo < p_err, uo < p_err + p_esc, uo < p_err + p_esc + p_ab], [3, 1, 2], 0)
    error = outcome == 3

    # Guardrail (one PII policy): block, warn or allow, with a score consistent with the action.
    p_block = np.minimum(0.95, _BLOCK * mult.get("guardrail", ones))
    ug = u[:, _U_GUARD]
    action = np.where(ug < p_block, 2, np.where(ug < p_block + _WARN, 1, 0))
    gscore = np.round(np.choose(action, [0.3 * u[:, _U_GUARD_SCORE], 0.5 + 0.3 * u[:, _U_GUARD_SCORE],
                                         0.8 + 0.2 * u[:, _U_GUARD_SCORE]]), 3)

    # Tokens: truncation at the channel's max_tokens, drawn or reached by a long answer.
    cap = _MAX_OUTPUT[ch]
    out_tok = np.maximum(1, np.round(_OUTPUT_MEDIAN[ch] * np.exp(0.5 * z[:, _Z_OUT])
                                     * mult.get("output_tokens", ones)))
    truncated = (u[:, _U_LENGTH] < np.minimum(0.95, _LENGTH * mult.get("length", ones))) | (out_tok >= cap)
    out_tok = np.where(truncated, cap, out_tok)
    ntools = (u[:, _U_NTOOLS][:, None] >= _TOOL_COUNT_CDF[intent][:, :3]).sum(axis=1)
    tool_ms = np.round(120.0 * np.exp(0.6 * z[:, _Z_TOOL:_Z_TOOL + 3]) * m_lat[:, None], 1)
    tool_err = u[:, _U_TOOL_ERR:_U_TOOL_ERR + 3] < np.minimum(0.95, _TOOL_ERROR * mult.get("tool_error", ones)
                                                               )[:, None]
    has_tool = np.arange(3)[None, :] < ntools[:, None]
    in_tok = np.round((700.0 + 220.0 * (turns.turn - 1)) * np.exp(0.25 * z[:, _Z_INPUT]) + 150.0 * ntools)

    # Latency: time to first token + generation + tool calls; an error is a timeout or a fast failure.
    ttft = _TTFT_MEDIAN_MS[ch] * np.exp(0.35 * z[:, _Z_TTFT]) * m_lat
    gen = out_tok * _MS_PER_TOKEN * np.exp(0.2 * z[:, _Z_GEN]) * m_lat
    latency = ttft + gen + (tool_ms * has_tool).sum(axis=1) + 40.0
    etype = np.searchsorted(_ERROR_TYPE_CDF, u[:, _U_ERROR_TYPE] * _ERROR_TYPE_CDF[-1], side="right")
    fail_ms = np.where(etype == 0, _TIMEOUT_MS[ch] * (1 + 0.05 * u[:, _U_FAIL_MS]),
                       (50.0 + 450.0 * u[:, _U_FAIL_MS]) * m_lat)
    latency = np.round(np.where(error, fail_ms, latency), 1)
    out_tok = np.where(error, 0, out_tok)
    cost = np.round(in_tok * _PRICE_IN + out_tok * _PRICE_OUT, 7)

    # Evaluation and feedback follow the outcome; a csat fault inflates the share of 1-2 scores.
    help_score = (_HELPFULNESS[outcome] + 0.1 * z[:, _Z_HELP] - 0.2 * truncated - 0.15 * (action == 2))
    help_score = np.round(np.clip(help_score * mult.get("evaluation", ones), 0.0, 1.0), 3)
    evaluated = x[:, _X_EVAL] < config.evaluation_share
    probs = np.where((outcome == 0)[:, None], _CSAT_RESOLVED, _CSAT_UNRESOLVED)
    low = probs[:, :2].sum(axis=1)
    low_new = np.minimum(0.95, low * mult.get("csat", ones))
    probs = np.concatenate([probs[:, :2] * (low_new / low)[:, None],
                            probs[:, 2:] * ((1 - low_new) / (1 - low))[:, None]], axis=1)
    csat = 1 + (u[:, _U_CSAT][:, None] >= np.cumsum(probs, axis=1)[:, :4]).sum(axis=1)
    ut = u[:, _U_THUMBS]
    thumbs = np.where(ut < _P_THUMBS_UP[csat - 1], 1, np.where(ut > 1 - _P_THUMBS_DOWN[csat - 1], -1, 0))
    sentiment = np.round(np.clip(0.4 * (csat - 3) + 0.15 * z[:, _Z_SENT], -1.0, 1.0), 3)
    feedback = u[:, _U_FEEDBACK] < config.feedback_share

    stamps = np.datetime_as_string(np.floor(turns.t * 1000.0).astype(np.int64).astype("datetime64[ms]"),
                                   unit="ms")
    agent, models = config.agent, (config.model, _SWITCHED_MODEL)
    versions = (*config.canary_versions, config.stable_version)  # index -1: the stable
    tracks = ("stable", "canary")
    actions = ("allow", "warn", "block")
    # Plain Python lists: building dicts from numpy scalars is several times slower.
    columns = [a.tolist() for a in (
        turns.t, stamps, turns.cid, canary, which, turns.turn, ch, turns.tenant, intent, outcome, etype,
        action, gscore, truncated, ntools, tool_ms, tool_err, u[:, _U_TOOL_ERR_TYPE], in_tok, out_tok,
        ttft, latency, cost, help_score, evaluated, feedback, csat, thumbs, sentiment, switched)]
    for i, (t, stamp, cid, cn, wh, turn, c, ten, it, o, et, act, gs, tr, nt, tms, terr, uterr, it_tok, ot, ft,
            lat, cst, hs, ev, fb, cs, th, se, sw) in enumerate(zip(*columns, strict=True)):
        names = _TOOLS[it]
        failed = _TOOL_ERRORS[int(uterr * 3)]
        tools = [{"name": names[k], "latency_ms": tms[k], "error_type": failed if terr[k] else None}
                 for k in range(nt)]
        is_error = o == 3
        if is_error:
            finish: list[str] = []
        else:
            finish = ["tool_calls", "length" if tr else "stop"] if nt else ["length" if tr else "stop"]
        data: dict[str, Any] = {
            "agent": agent,
            "version": versions[wh],
            "track": tracks[cn],
            "channel": CHANNELS[c],
            "tenant": TENANTS[ten],
            "conversation_id": f"c-{cid:013x}",
            "turn": turn,
            "intent": INTENTS[it],
            "model": models[sw],
            "latency_ms": lat,
            "ttft_ms": None if is_error else round(ft, 1),
            "input_tokens": int(it_tok),
            "output_tokens": int(ot),
            "cost_usd": cst,
            "outcome": _OUTCOMES[o],
            "error_type": _ERROR_TYPES[et] if is_error else None,
            "finish_reasons": finish,
            "guardrails": [{"policy": "pii", "action": actions[act], "score": gs}],
            "tool_calls": tools,
            "evaluations": [] if is_error or not ev else [{"name": "helpfulness", "score": hs}],
        }
        if fb:
            data["feedback"] = {"csat": cs, "thumbs": th, "sentiment": se}
        yield t, {
            "specversion": "1.0",
            "id": f"{prefix}{first + i:08x}",
            "source": "vigil-simulate",
            "type": "dev.vigil.interaction.v1",
            "time": stamp + "Z",
            "datacontenttype": "application/json",
            "data": data,
        }


def _timed(config: SimConfig, weight_fn: Callable[[], float] | None = None
           ) -> Iterator[tuple[float, dict[str, Any]]]:
    """Like :func:`generate` but yield ``(event time in epoch seconds, event)`` pairs."""
    # spawn(4)'s first three children are spawn(3)'s: the fourth stream leaves the older draws unchanged.
    skeleton_rng, uniform_rng, normal_rng, extra_rng = np.random.default_rng(config.seed).spawn(4)
    prefix = _ids(config)
    count = 0
    for batch in _skeleton(config, skeleton_rng):
        if weight_fn is None:
            bounds = [0, len(batch.t)]
        else:
            # Re-read the weight often so that traffic follows a rollback within a fraction of a second.
            edges = np.arange(batch.t[0] + _WEIGHT_REFRESH_S, batch.t[-1], _WEIGHT_REFRESH_S)
            bounds = [0, *np.searchsorted(batch.t, edges, side="left").tolist(), len(batch.t)]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if hi <= lo:
                continue
            weight = config.canary_weight if weight_fn is None else _check_weight(weight_fn())
            part = batch.take(slice(lo, hi))
            u = uniform_rng.random((hi - lo, _U_WIDTH))
            z = normal_rng.standard_normal((hi - lo, _Z_WIDTH))
            x = extra_rng.random((hi - lo, _X_WIDTH))
            yield from _attributes(config, part, weight, u, z, x, count, prefix)
            count += hi - lo


def _check_weight(weight: float) -> float:
    weight = float(weight)
    if math.isnan(weight):
        raise ValueError("weight_fn returned NaN; it must return a percentage in [0, 100]")
    return min(100.0, max(0.0, weight))


def generate(config: SimConfig, weight_fn: Callable[[], float] | None = None) -> Iterator[dict[str, Any]]:
    """Yield CloudEvent dicts in non-decreasing event time, deterministically for ``config.seed``.

    ``weight_fn``, if given, returns the current canary weight in percent and overrides
    ``config.canary_weight``; it is consulted every 0.2 s of event time.

    >>> events = list(generate(SimConfig(rate=20, duration=5)))
    >>> events[0]["data"]["agent"], sorted({e["data"]["track"] for e in events}) <= ["canary", "stable"]
    ('support-bot', True)
    """
    for _, event in _timed(config, weight_fn):
        yield event


_encoder = msgspec.json.Encoder()


def write_jsonl(config: SimConfig, path: str | os.PathLike[str]) -> int:
    """Write the events as JSON lines to ``path`` (``-``: standard output); return how many."""
    count = 0
    buf = bytearray()
    with contextlib.ExitStack() as stack:
        to_stdout = os.fspath(path) == "-"
        out = sys.stdout.buffer if to_stdout else stack.enter_context(open(path, "wb"))  # noqa: SIM115
        for event in generate(config):
            _encoder.encode_into(event, buf, len(buf))
            buf += b"\n"
            count += 1
            if len(buf) >= 1 << 20:
                out.write(buf)
                buf.clear()
        out.write(buf)
        out.flush()
    return count


# --- Kafka -----------------------------------------------------------------------------------------------
_FLUSH_EVERY = 2000  # sends between flushes: bounds the memory of pending futures and surfaces errors
_YIELD_EVERY = 256  # sends between yields to the event loop when not sleeping


def _reap(futures: list[asyncio.Future[Any]]) -> list[asyncio.Future[Any]]:
    """Drop delivered futures, raising the first delivery error; return those still pending."""
    still = []
    for fut in futures:
        if fut.done():
            fut.result()  # raises the delivery error, if any
        else:
            still.append(fut)
    return still


async def produce(config: SimConfig, bootstrap: str, topic: str, *, realtime: bool = True, speed: float = 1.0,
                  weight_fn: Callable[[], float] | None = None, key_by: str = "agent",
                  stop: asyncio.Event | None = None) -> int:
    """Send the events to Kafka ``topic`` as JSON values; return how many were sent.

    With ``realtime`` the run starts now (``config.start`` is replaced by the wall clock) and each event is
    sent when its event time has come, ``speed`` times faster than real time; otherwise events are sent as
    fast as possible. The key is the agent name (``key_by="agent"``) or the conversation id
    (``key_by="conversation"``). Sending stops early once ``stop`` is set.
    """
    # imported lazily: file output must not need a Kafka client
    from controller.runtime.kafka import producer as make_producer

    if key_by not in ("agent", "conversation"):
        raise ValueError(f"key_by must be 'agent' or 'conversation'; got {key_by!r}")
    if not (speed > 0) or not math.isfinite(speed):
        raise ValueError(f"speed must be a finite number > 0; got {speed!r}")
    loop = asyncio.get_running_loop()
    if realtime:
        config = dataclasses.replace(config, start=time.time())
    anchor = loop.time()
    agent_key = config.agent.encode()
    producer = make_producer(bootstrap, options={}, client_id="vigil-simulate", linger_ms=10)
    count = 0
    futures: list[asyncio.Future[Any]] = []
    try:
        await producer.start()  # inside the try: a failed start must still close the client
        for t, event in _timed(config, weight_fn):
            if stop is not None and stop.is_set():
                break
            if realtime:
                due = anchor + (t - config.start) / speed
                # Small steps so that a stop request is honoured promptly even between sparse events.
                while (delay := due - loop.time()) > 0:
                    if stop is not None and stop.is_set():
                        break
                    await asyncio.sleep(min(delay, 0.05))
                    futures = _reap(futures)
                if stop is not None and stop.is_set():
                    break
            key = agent_key if key_by == "agent" else event["data"]["conversation_id"].encode()
            futures.append(await producer.send(topic, value=_encoder.encode(event), key=key))
            count += 1
            if len(futures) >= _FLUSH_EVERY:
                await producer.flush()
                futures = _reap(futures)
            elif count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let other tasks (the demo's controller) run during a burst
        await producer.flush()
        _reap(futures)
    finally:
        await producer.stop()
    return count


# --- CLI -------------------------------------------------------------------------------------------------
def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "simulate",
        help="generate synthetic agent traffic with injected faults",
        description="Generate synthetic agent interaction events (CloudEvents JSON) to a JSON lines file "
                    "or a Kafka topic, optionally injecting faults into the canary.",
        epilog="fault specs: KIND[:key=value,...], KIND in " + ", ".join(FAULT_KINDS)
               + "; keys onset, magnitude, ramp, duration (seconds / multiplier), target "
                 "(canary|stable|both), tenant (" + "|".join(TENANTS) + "; default all), version (one "
                 "canary version of several). "
                 "Example: --fault escalation:magnitude=3,onset=60,ramp=30,tenant=acme",
    )
    out = parser.add_argument_group("output (one of)")
    out.add_argument("--output", "-o", metavar="FILE", help="write JSON lines to FILE ('-': stdout)")
    out.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers")
    out.add_argument("--topic", metavar="TOPIC", help="Kafka topic (with --bootstrap)")
    # Defaults stay None so that SimConfig owns them.
    parser.add_argument("--rate", type=float, help="mean events per second (default 50)")
    parser.add_argument("--duration", type=float, help="seconds of event time (default 300; 'inf': endless)")
    parser.add_argument("--canary-weight", type=float, help="percent of traffic to the canary (default 10)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--agent", help="agent name (default support-bot)")
    parser.add_argument("--stable-version", help="stable version label (default v1)")
    parser.add_argument("--canary-version", help="canary version label (default v2)")
    parser.add_argument("--extra-canary-version", action="append", default=[], metavar="VERSION",
                        help="a further canary version sharing the canary traffic (repeatable)")
    parser.add_argument("--feedback-share", type=float, help="share of turns with feedback (default 0.3)")
    parser.add_argument("--evaluation-share", type=float, help="share of turns with an evaluation (default 1)")
    parser.add_argument("--wave-period", type=float, help="period of the rate wave in s (default 86400)")
    parser.add_argument("--wave-amplitude", type=float, help="relative amplitude of the wave (default 0.3)")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC",
                        help="inject a fault (repeatable), e.g. escalation:onset=60,ramp=30")
    parser.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                        help="Kafka: send each event when its time comes, starting now (default)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="Kafka realtime: time acceleration (default 1)")
    parser.add_argument("--key-by", choices=("agent", "conversation"), default="agent",
                        help="Kafka message key (default agent)")
    parser.set_defaults(func=_run)


def _config_from_args(args: argparse.Namespace) -> SimConfig:
    kwargs: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("rate", "duration", "canary_weight", "seed", "agent", "stable_version", "canary_version",
                     "wave_period", "wave_amplitude", "feedback_share", "evaluation_share")
        if getattr(args, name) is not None
    }
    kwargs["extra_canary_versions"] = tuple(args.extra_canary_version)
    kwargs["faults"] = tuple(Fault.parse(spec) for spec in args.fault)
    return SimConfig(**kwargs)


async def _produce_until_interrupted(config: SimConfig, args: argparse.Namespace) -> int:
    """Run :func:`produce`, turning Ctrl-C into a clean stop so that the summary still reports the count."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = False
    # Signal handlers only work in the main thread of the main interpreter, and not on Windows.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        handled = True
    try:
        return await produce(config, args.bootstrap, args.topic, realtime=args.realtime, speed=args.speed,
                             key_by=args.key_by, stop=stop)
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)


def _run(args: argparse.Namespace) -> int:
    """Entry point of ``vigil simulate``; returns the exit code."""

    def fail(message: str, code: int = 2) -> int:
        print(f"vigil simulate: error: {message}", file=sys.stderr)
        return code

    if args.output is not None and (args.bootstrap is not None or args.topic is not None):
        return fail("give either --output or --bootstrap/--topic, not both")
    if args.output is None and (args.bootstrap is None or args.topic is None):
        if args.bootstrap is None and args.topic is None:
            return fail("an output is required: --output FILE or --bootstrap HOST:PORT --topic TOPIC")
        return fail("Kafka output needs both --bootstrap and --topic")
    try:
        config = _config_from_args(args)
        if not (args.speed > 0) or not math.isfinite(args.speed):
            raise ValueError(f"speed must be a finite number > 0; got {args.speed!r}")
    except ValueError as exc:
        return fail(str(exc))
    if args.output is not None:
        if math.isinf(config.duration):
            return fail("duration must be finite when writing a file")
        try:
            count = write_jsonl(config, args.output)
        except OSError as exc:
            return fail(f"cannot write {args.output}: {exc.strerror or exc}", 1)
        where = "stdout" if args.output == "-" else args.output
        print(f"simulate: wrote {count} events to {where}", file=sys.stderr)
        return 0
    from aiokafka.errors import KafkaError

    try:
        count = asyncio.run(_produce_until_interrupted(config, args))
    except KafkaError as exc:
        return fail(f"Kafka at {args.bootstrap}: {exc}", 1)
    print(f"simulate: sent {count} events to topic {args.topic} at {args.bootstrap}", file=sys.stderr)
    return 0
