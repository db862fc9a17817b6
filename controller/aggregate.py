"""Pre-aggregation: raw events into per-series one-second bucket summaries (the ingest stage's output).

The raw event path is the hot one, so it only counts: per (agent, version, track, channel, second) it
keeps trials and harmful outcomes per rate metric, and a sparse log-spaced histogram per value metric.
A :class:`Partial` carries one agent's buckets from one poll of one source partition, with that
partition's event-time high mark, to the stateful stage keyed by agent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from controller.events import Event
from controller.metrics import observe

__all__ = ["Bucket", "Partial", "Aggregator", "bin_of", "bin_value", "merge_bucket"]

# Values are binned on a log scale with 5% steps (symmetric for negatives, one bin for |x| < 1e-6):
# fine enough for quantile thresholds, coarse enough that a bucket stays a few dozen integers.
_EPS = 1e-6
_LOG_STEP = math.log(1.05)
_LOG_EPS = math.log(_EPS)
MAX_EXAMPLES = 3


def bin_of(x: float) -> int:
    """The histogram bin of ``x``: monotone non-decreasing in ``x``.

    >>> bin_of(0.0), bin_of(1.0) < bin_of(1.06), bin_of(-2.0) < bin_of(-1.0) < bin_of(0.0)
    (0, True, True)
    """
    if x > _EPS:
        return 1 + int((math.log(x) - _LOG_EPS) / _LOG_STEP)
    if x < -_EPS:
        return -1 - int((math.log(-x) - _LOG_EPS) / _LOG_STEP)
    return 0


def bin_value(b: int) -> float:
    """A representative value of bin ``b`` (its geometric middle)."""
    if b == 0:
        return 0.0
    mag = math.exp(_LOG_EPS + (abs(b) - 0.5) * _LOG_STEP)
    return mag if b > 0 else -mag


class Bucket(msgspec.Struct, array_like=True):
    """The summary of one series in one bucket of event time."""

    version: str
    track: str
    channel: str
    start: int
    n: int = 0
    rates: dict[str, list[int]] = msgspec.field(default_factory=dict)  # metric -> [trials, harmful]
    values: dict[str, dict[int, int]] = msgspec.field(default_factory=dict)  # metric -> {bin: count}
    sums: dict[str, float] = msgspec.field(default_factory=dict)  # metric -> sum of values
    examples: dict[str, list[str]] = msgspec.field(default_factory=dict)  # metric -> conversation ids


class Partial(msgspec.Struct, array_like=True):
    """One agent's buckets from one poll of one source, with the source's event-time high mark."""

    agent: str
    source: str
    high_time: float
    first_offset: int
    last_offset: int
    buckets: list[Bucket]


def merge_bucket(into: Bucket, other: Bucket) -> None:
    """Add ``other`` (same series and start) into ``into``."""
    into.n += other.n
    for m, (t, h) in other.rates.items():
        r = into.rates.get(m)
        if r is None:
            into.rates[m] = [t, h]
        else:
            r[0] += t
            r[1] += h
    for m, hist in other.values.items():
        mine = into.values.setdefault(m, {})
        for b, c in hist.items():
            mine[b] = mine.get(b, 0) + c
        into.sums[m] = into.sums.get(m, 0.0) + other.sums.get(m, 0.0)
    for m, ids in other.examples.items():
        mine_ids = into.examples.setdefault(m, [])
        mine_ids.extend(ids[: MAX_EXAMPLES - len(mine_ids)])


class Aggregator:
    """Accumulates events of one poll into per-agent buckets; :meth:`drain` hands them out as partials."""

    def __init__(self, bucket_seconds: int = 1) -> None:
        if bucket_seconds < 1:
            raise ValueError(f"bucket_seconds must be >= 1, got {bucket_seconds!r}")
        self.bucket_seconds = bucket_seconds
        self._buckets: dict[tuple[str, str, str, str, str, int], Bucket] = {}
        self._high: dict[str, float] = {}
        self._offsets: dict[str, tuple[int, int]] = {}
        self.count = 0

    def add(self, event: Event, source: str = "0", offset: int = 0) -> None:
        d = event.data
        agent = d.agent or ""
        start = int(event.time // self.bucket_seconds) * self.bucket_seconds
        key = (agent, source, d.version or "", d.track or "", d.channel or "other", start)
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = Bucket(key[2], key[3], key[4], start)
        b.n += 1
        rates, values = observe(d)
        conv = d.conversation_id
        for m, t, h in rates:
            r = b.rates.get(m)
            if r is None:
                b.rates[m] = [t, h]
            else:
                r[0] += t
                r[1] += h
            if h and conv is not None:
                ex = b.examples.setdefault(m, [])
                if len(ex) < MAX_EXAMPLES:
                    ex.append(conv)
        for m, x in values:
            hist = b.values.get(m)
            if hist is None:
                hist = b.values[m] = {}
            k = bin_of(x)
            hist[k] = hist.get(k, 0) + 1
            b.sums[m] = b.sums.get(m, 0.0) + x
        if event.time > self._high.get(source, -math.inf):
            self._high[source] = event.time
        lo, hi = self._offsets.get(source, (offset, offset))
        self._offsets[source] = (min(lo, offset), max(hi, offset))
        self.count += 1

    def add_many(self, events: Iterable[Event], source: str = "0") -> None:
        for e in events:
            self.add(e, source)

    def drain(self) -> list[Partial]:
        """The accumulated partials (one per agent and source), leaving the aggregator empty."""
        per: dict[tuple[str, str], list[Bucket]] = {}
        for (agent, source, *_), b in self._buckets.items():
            per.setdefault((agent, source), []).append(b)
        out = [
            Partial(agent, source, self._high[source], *self._offsets[source], buckets=buckets)
            for (agent, source), buckets in sorted(per.items())
        ]
        self._buckets.clear()
        self._high.clear()
        self._offsets.clear()
        return out
