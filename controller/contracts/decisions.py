"""Decisions and their evidence: the JSON line that replay writes and the decisions topic carries."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

import msgspec

__all__ = ["Action", "Decision", "Evidence", "decision_id", "decode", "encode", "iso", "log_fields", "seconds"]

Action = Literal["rollback", "set_weight", "promote", "pause", "alert"]


class Evidence(msgspec.Struct, frozen=True):
    """One test's view at the time of a decision."""

    metric: str
    detector: str
    statistic: float
    threshold: float
    p_value: float
    n_canary: int
    n_stable: int
    canary_value: float | None
    stable_value: float | None


class Decision(msgspec.Struct, frozen=True):
    """What vigil decided for one agent, when (in event time), why, and on what evidence."""

    time: str
    agent: str
    action: Action
    version: str
    weights: dict[str, float]
    reason: str
    evidence: list[Evidence]
    examples: list[str]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Decision)


def encode(decision: Decision) -> bytes:
    return _encoder.encode(decision)


def decode(raw: bytes) -> Decision:
    return _decoder.decode(raw)


def decision_id(decision: Decision) -> str:
    """A short id of one decision, from its content: every replica that takes the same decision gives it the
    same id, so log lines, notifications and status can be matched across replicas.

    >>> d = Decision("2026-11-26T00:02:10.000Z", "bot", "rollback", "v2", {"v1": 100.0}, "r", [], [])
    >>> decision_id(d) == decision_id(decode(encode(d))), len(decision_id(d))
    (True, 16)
    """
    return hashlib.sha256(encode(decision)).hexdigest()[:16]


def log_fields(decision: Decision, rollout: str | None = None) -> dict[str, str]:
    """The structured log fields of a decision (``extra=`` of a log call): identifiers only, never content."""
    out = {"agent": decision.agent, "decision": decision_id(decision), "action": decision.action,
           "version": decision.version}
    if rollout:
        out["rollout"] = rollout
    return out


def seconds(time: str) -> float:
    """Epoch seconds of a decision's ``time`` (the inverse of :func:`iso`).

    >>> seconds(iso(1.5))
    1.5
    """
    return datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()


def iso(t: float) -> str:
    """RFC 3339 UTC with milliseconds, as the decisions carry it.

    >>> iso(0.0)
    '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
