"""Event-time windows: buckets stay open until the watermark passes them plus the allowed lateness.

The watermark of an agent is the lowest event-time high mark among its active sources (the source
partitions read by the ingest stage), less the allowed lateness. Senders report a source with nothing
left unread at their newest time, so a quiet or caught-up partition never holds the watermark back,
while a partition with a backlog holds it until the backlog is read. A source whose last report is
older, in event time, than the idle timeout stops holding it back (its sender is gone).
Data for a bucket the watermark has passed is late: it is counted per agent, never silently dropped
into the analysis.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from controller.ingest.buckets import Bucket, Summary, merge_bucket

__all__ = ["EventTimeWindow"]


class EventTimeWindow:
    """Open buckets of one agent, and the watermark that closes them."""

    def __init__(self, bucket_seconds: int = 1, allowed_lateness: float = 5.0, idle_timeout: float = 60.0) -> None:
        self.bucket_seconds = bucket_seconds
        self.allowed_lateness = allowed_lateness
        self.idle_timeout = idle_timeout
        self.high: dict[str, float] = {}
        self.reported: dict[str, float] = {}  # source -> its sender's newest time at its last report
        self.applied: dict[str, int] = {}  # source -> last offset applied, to drop replayed summaries
        self.open: dict[int, dict[tuple[str, str, str, str], Bucket]] = {}
        self.closed_until = -math.inf  # every bucket starting before this is closed
        self.late_events = 0
        self.duplicate_summaries = 0

    @property
    def watermark(self) -> float:
        if not self.high:
            return -math.inf
        newest = max(self.reported.values())
        live = [h for s, h in self.high.items() if self.reported[s] >= newest - self.idle_timeout]
        return min(live) - self.allowed_lateness

    def add(self, summary: Summary) -> bool:
        """Merge a summary's buckets; False when the summary was already applied (a replay after a crash)."""
        if summary.offsets and all(last <= self.applied.get(src, -1) for src, (_, last) in summary.offsets.items()):
            self.duplicate_summaries += 1
            return False
        for src, (_, last) in summary.offsets.items():
            self.applied[src] = max(last, self.applied.get(src, -1))
        # the newest report on a source wins, even when lower: a backlog found behind it must hold it back
        self.high.update(summary.highs)
        if summary.highs:
            sender_newest = max(summary.highs.values())
            for s in summary.highs:
                self.reported[s] = sender_newest
        for b in summary.buckets:
            if b.start < self.closed_until:
                self.late_events += b.n
                continue
            series = self.open.setdefault(b.start, {})
            key = (b.version, b.track, b.channel, b.tenant)
            mine = series.get(key)
            if mine is None:
                # copy so later merges never alias the caller's summary
                series[key] = msgspec.convert(msgspec.to_builtins(b), Bucket)
            else:
                merge_bucket(mine, b)
        return True

    def close(self, flush: bool = False) -> list[tuple[int, list[Bucket]]]:
        """Buckets the watermark has passed (all of them with ``flush``), oldest first."""
        limit = math.inf if flush else self.watermark
        ready = sorted(s for s in self.open if s + self.bucket_seconds <= limit)
        # series in a fixed order, not arrival order, so that what follows is the same however the
        # summaries came in (which examples are kept, the order floating-point sums are taken in)
        out = [(s, [b for _, b in sorted(self.open.pop(s).items())]) for s in ready]
        if ready:
            self.closed_until = max(self.closed_until, ready[-1] + self.bucket_seconds)
        if math.isfinite(limit):
            # a bucket the watermark has passed is closed even if it never held data: what comes for it is late
            self.closed_until = max(self.closed_until, (limit // self.bucket_seconds) * self.bucket_seconds)
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "high": self.high, "reported": self.reported, "applied": self.applied,
            "closed_until": None if math.isinf(self.closed_until) else self.closed_until,
            "late_events": self.late_events, "duplicate_summaries": self.duplicate_summaries,
            "open": [msgspec.to_builtins(b) for series in self.open.values() for b in series.values()],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.high = {str(k): float(v) for k, v in state["high"].items()}
        self.reported = {str(k): float(v) for k, v in state["reported"].items()}
        self.applied = {str(k): int(v) for k, v in state["applied"].items()}
        self.closed_until = -math.inf if state["closed_until"] is None else float(state["closed_until"])
        self.late_events = int(state["late_events"])
        self.duplicate_summaries = int(state["duplicate_summaries"])
        self.open = {}
        for raw in state["open"]:
            b = msgspec.convert(raw, Bucket, strict=False)
            self.open.setdefault(b.start, {})[(b.version, b.track, b.channel, b.tenant)] = b
