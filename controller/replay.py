"""``vigil replay``: a recorded JSON lines file through the same aggregation and engine as the live path.

The decisions are reported as the live actuator would carry them out: through the same rollback guards
(:class:`controller.policy.guards.RollbackGuard`, ``spec.rollback.cooldown`` and ``maxActions``), so a
rollback the live path would withhold is reported as the alert it becomes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from controller.config import RollbackPolicy, Rollout
from controller.contracts.decisions import Decision
from controller.contracts.events import InvalidEvent, decode_line
from controller.engine.core import Engine
from controller.ingest.aggregator import Aggregator, tenant_caps
from controller.policy.guards import RollbackGuard

__all__ = ["ReplayStats", "replay"]

# Events are handed to the engine in chunks, as the live ingest hands it one poll at a time.
CHUNK = 2000


class ReplayStats:
    def __init__(self) -> None:
        self.events = 0
        self.invalid = 0
        self.invalid_reasons: dict[str, int] = {}
        self.late = 0
        self.withheld = 0
        """Rollbacks the rollback policy turned into alerts."""


def replay(source: str | Path | BinaryIO, rollouts: list[Rollout] | None = None,
           stats: ReplayStats | None = None) -> Iterator[Decision]:
    """Decisions for the events of a JSONL file, in event-time order of the buckets they close, as the live
    actuator would carry them out (a rollback the rollback policy withholds becomes an alert)."""
    stats = stats or ReplayStats()
    engine = Engine(rollouts or [])

    def policy_of(agent: str) -> RollbackPolicy | None:
        rollout = engine.rollouts.get(agent)
        return None if rollout is None else rollout.rollback

    guards = RollbackGuard(policy_of)
    agg = Aggregator(bucket_seconds=_bucket_seconds(rollouts), tenants=tenant_caps(rollouts or []))
    fh = open(source, "rb") if isinstance(source, str | Path) else source  # noqa: SIM115
    try:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                event = decode_line(line)
            except InvalidEvent as exc:
                stats.invalid += 1
                key = exc.reason.split(" - at ")[0][:80]
                stats.invalid_reasons[key] = stats.invalid_reasons.get(key, 0) + 1
                continue
            agg.add(event, "0", lineno)
            stats.events += 1
            if agg.count >= CHUNK:
                agg.count = 0
                for p in agg.drain():
                    yield from map(guards.apply, engine.apply(p))
        for p in agg.drain():
            yield from map(guards.apply, engine.apply(p))
        yield from map(guards.apply, engine.flush())
    finally:
        if fh is not source:
            fh.close()
        stats.late = sum(st.window.late_events for st in engine.agents.values())
        stats.withheld = guards.withheld


def _bucket_seconds(rollouts: list[Rollout] | None) -> int:
    sizes = {r.analysis.bucket_seconds for r in rollouts or []}
    if len(sizes) > 1:
        raise ValueError("all rollouts replayed together must share spec.analysis.bucketSeconds")
    return sizes.pop() if sizes else 1
