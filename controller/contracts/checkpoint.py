"""Checkpoints: one agent's engine state as the changelog topic (``<group>.state``) carries it.

A checkpoint is msgpack, zlib-compressed, with a schema version (:data:`VERSION`). Reading one is strict,
so a checkpoint is read as what it is or refused with a clear message, never misread:

* the current version is decoded into :class:`Checkpoint` (unknown fields refused, types checked);
* an older version is migrated first (version 0: the checkpoints written before the schema had a version,
  whose window counted ``duplicate_partials`` where it now counts ``duplicate_summaries``; version 1: the
  analysis's rate tests were flat dicts, before they took the detector contract's
  ``{"detector", "params", "vars"}`` form; version 2: one ``analysis`` and one ``policy``, before an agent in
  track mode judged each of its canary versions, each with its own analysis and policy, in ``canaries``, and
  before the analysis had category-share tests, which a version-2 reader would misjudge as critical rate tests;
  an analysis without ``categorical`` resumes without them);
* a newer version, written by a later vigil, is refused (:class:`CheckpointError`): downgrading a deployment
  must not silently drop or misread the state of its rollouts;
* bytes that are not a checkpoint at all are refused too.

>>> cp = Checkpoint(agent="bot", window={"high": {}}, canaries=[], track=None)
>>> decode(encode(cp)) == cp
True
>>> decode(zlib.compress(msgspec.msgpack.encode({"version": 99, "agent": "bot"})))
Traceback (most recent call last):
controller.contracts.checkpoint.NewerCheckpointError: checkpoint version 99 is newer than this vigil reads (3): \
upgrade vigil, or start this deployment on a new --group
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

from controller.errors import VigilError

__all__ = ["VERSION", "Checkpoint", "CheckpointError", "NewerCheckpointError", "decode", "encode"]

#: The schema version this vigil writes, and the newest it reads.
VERSION = 3


class CheckpointError(VigilError, ValueError):
    """A changelog record that is not a checkpoint this vigil can read; the message says why."""


class NewerCheckpointError(CheckpointError):
    """A checkpoint written by a later vigil (a downgrade): refused, never read as if it were older."""


class Checkpoint(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The state of one agent, as :meth:`controller.engine.core.Engine.agent_state` gives it."""

    version: int = VERSION
    """Schema version of the record."""
    agent: str
    """The agent this state belongs to (also the record's key)."""
    window: dict[str, Any]
    """Event-time window: open buckets, per-source progress, watermark, late and duplicate counts."""
    canaries: list[dict[str, Any]]
    """Per canary version judged, in order of admission: ``{"analysis", "policy", "seen"}``, its canary analysis
    (tests, thresholds, baselines), its rollout policy (phase, step, weights) and the start of its last bucket
    with traffic (None when not tracked); empty before a stable and a canary version were both seen."""
    track: dict[str, Any] | None
    """Track mode's choice of versions: ``{"stable", "candidates", "unjudged_events", "refused", "full_alerted"}``
    (see :class:`controller.engine.core.AgentState`); None: nothing known yet, as after a migration."""

    def state(self) -> dict[str, Any]:
        """The engine's form of this checkpoint (what :meth:`~controller.engine.core.Engine.load_agent` takes)."""
        return {"agent": self.agent, "window": self.window, "canaries": self.canaries,
                "track": self.track if self.track is not None else dict(_NO_TRACK)}


#: The track-mode state of an agent that has chosen nothing yet.
_NO_TRACK: dict[str, Any] = {"stable": None, "candidates": [], "unjudged_events": 0, "refused": 0,
                             "full_alerted": False}


def _v0_to_v1(doc: dict[str, Any]) -> dict[str, Any]:
    window = dict(doc.get("window") or {})
    if "duplicate_partials" in window:
        window["duplicate_summaries"] = window.pop("duplicate_partials")
    return {**doc, "window": window, "version": 1}


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    analysis = doc.get("analysis")
    if isinstance(analysis, dict) and isinstance(analysis.get("tests"), dict):
        tests = {}
        for name, t in analysis["tests"].items():
            if isinstance(t, dict) and "detector" not in t:  # a version-1 MixtureFisherTest
                # version 1 had no fresh starts (change_every 0), so the count of tables was not needed
                t = {"detector": "mixture_fisher",
                     "params": {**{k: t.get(k) for k in ("alpha", "direction", "log_psi")}, "change_every": 0},
                     "vars": {"log_lr": t.get("log_lr"), "n": 0, "max_stat": t.get("max_stat"),
                              "counts": t.get("counts")}}
            tests[name] = t
        analysis = {**analysis, "tests": tests}
    return {**doc, "analysis": analysis, "version": 2}


def _v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
    analysis, policy = doc.get("analysis"), doc.get("policy")
    rest = {k: v for k, v in doc.items() if k not in ("analysis", "policy")}
    if not isinstance(analysis, dict):
        return {**rest, "canaries": [], "track": None, "version": 3}
    # one canary, already judged; when it last had traffic is unknown: the engine counts its idle time from the
    # first bucket after the restore
    return {**rest, "canaries": [{"analysis": analysis, "policy": policy, "seen": None}],
            "track": {**_NO_TRACK, "stable": analysis.get("stable")}, "version": 3}


#: Migrations from each older version to the next one.
_MIGRATIONS = {0: _v0_to_v1, 1: _v1_to_v2, 2: _v2_to_v3}


def encode(cp: Checkpoint) -> bytes:
    """The record's value: msgpack, zlib-compressed (the open buckets of a backlog can be large)."""
    return zlib.compress(msgspec.msgpack.encode(cp), 1)


def decode(raw: bytes) -> Checkpoint:
    """The checkpoint in ``raw``, migrated to :data:`VERSION`; :class:`CheckpointError` when it cannot be."""
    try:
        doc = msgspec.msgpack.decode(zlib.decompress(raw))
    except (zlib.error, msgspec.DecodeError) as exc:
        raise CheckpointError(f"not a vigil checkpoint: {exc}") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"not a vigil checkpoint: a {type(doc).__name__}, not a map")
    version = doc.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise CheckpointError(f"checkpoint version must be a non-negative integer, got {version!r}")
    if version > VERSION:
        raise NewerCheckpointError(f"checkpoint version {version} is newer than this vigil reads ({VERSION}): "
                              "upgrade vigil, or start this deployment on a new --group")
    while version < VERSION:
        doc = _MIGRATIONS[version](doc)
        version = doc["version"]
    try:
        return msgspec.convert(doc, Checkpoint)
    except msgspec.ValidationError as exc:
        raise CheckpointError(f"invalid checkpoint (version {VERSION}): {exc}") from None
