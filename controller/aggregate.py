"""Pre-aggregation: raw events into per-series one-second bucket summaries (the ingest stage's output).

The raw event path is the hot one, so it only counts: per (agent, version, track, channel, second) it
keeps trials and harmful outcomes per rate metric, and a sparse log-spaced histogram per value metric.
For an agent whose rollout segments its tests by tenant, the tenant is part of the series too (cut to
:data:`MAX_TENANT_CHARS`, and only the first ``maxSegments`` tenants seen by this process are kept apart,
the others pooled as ``other``), so the state per second stays bounded; nothing else of an event is kept.
A :class:`Partial` carries one agent's buckets from one poll (of any number of source partitions),
with the event-time progress of every source the sender reads, to the stateful stage keyed by agent.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

import msgspec

from controller.config import Rollout
from controller.events import Event
from controller.metrics import CATALOG, observe

__all__ = ["MAX_TENANT_CHARS", "OTHER", "Bucket", "Partial", "Aggregator", "bin_of", "bin_value", "merge_bucket",
           "tenant_caps"]

# Values are binned on a log scale with 5% steps (symmetric for negatives, one bin for |x| < 1e-6):
# fine enough for quantile thresholds, coarse enough that a bucket stays a few dozen integers.
_EPS = 1e-6
_LOG_STEP = math.log(1.05)
_LOG_EPS = math.log(_EPS)
MAX_EXAMPLES = 3
# rate metrics whose counted outcome is the good one (resolutions): their examples are the misses
_LOWER_IS_WORSE = frozenset(s.name for s in CATALOG.values() if s.kind == "rate" and s.direction == "decrease")
#: Characters of a tenant name kept: a tenant is an identifier, and an unbounded one would be a memory hole.
MAX_TENANT_CHARS = 64
#: The segment that pools the values of a dimension beyond the first ``maxSegments``.
OTHER = "other"


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
    # last, with a default, so that a bucket encoded before tenants were kept still decodes
    tenant: str = ""  # "" unless the agent's rollout segments by tenant


class Partial(msgspec.Struct, array_like=True):
    """One agent's buckets from one poll, with the sender's event-time progress.

    ``highs`` maps each source the sender reads to the event time up to which it has read it; a source
    with nothing left unread reports the agent's newest time, so that it never holds the watermark back.
    One poll gives one partial per agent, so its progress is applied only with all of its buckets.
    ``offsets`` maps each source of the poll to its first and last offset, to recognise a replayed poll.
    """

    agent: str
    highs: dict[str, float]
    offsets: dict[str, tuple[int, int]]
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
        # the smallest ids, not the first to arrive: the same whatever the order partials merge in
        into.examples[m] = sorted(set(into.examples.get(m, ())) | set(ids))[:MAX_EXAMPLES]


def tenant_caps(rollouts: Iterable[Rollout]) -> dict[str, int]:
    """Agents whose rollout segments by tenant, with how many tenants each keeps apart (``maxSegments``)."""
    return {r.agent: r.analysis.max_segments for r in rollouts if r.agent and "tenant" in r.analysis.segments}


class Aggregator:
    """Accumulates events of one poll into per-agent buckets; :meth:`drain` hands them out as partials.

    ``tenants`` maps the agents whose buckets are split by tenant to the number of tenants kept apart
    (see :func:`tenant_caps`); the tenant of any other agent's events is never read.
    """

    def __init__(self, bucket_seconds: int = 1, tenants: Mapping[str, int] | None = None) -> None:
        if bucket_seconds < 1:
            raise ValueError(f"bucket_seconds must be >= 1, got {bucket_seconds!r}")
        self.bucket_seconds = bucket_seconds
        self.tenant_caps = dict(tenants or {})
        # the first tenants seen per agent, kept across drains: a tenant keeps its series for the life of the
        # process (the analysis makes its own, checkpointed, choice of the tenants it tests apart)
        self._tenants: dict[str, set[str]] = {}
        self._buckets: dict[tuple[str, str, str, str, str, int], Bucket] = {}
        self._high: dict[str, float] = {}
        self._offsets: dict[str, tuple[int, int]] = {}
        self._last_offset: dict[str, int] = {}  # kept across drains, for add_many's numbering
        self._agent_high: dict[str, float] = {}  # newest event time of each agent, kept across drains
        self.count = 0

    def add(self, event: Event, source: str = "0", offset: int = 0) -> None:
        d = event.data
        agent = d.agent or ""
        start = int(event.time // self.bucket_seconds) * self.bucket_seconds
        tenant = self._tenant(agent, d.tenant) if self.tenant_caps else ""
        key = (agent, d.version or "", d.track or "", d.channel or "other", tenant, start)
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = Bucket(key[1], key[2], key[3], start, tenant=tenant)
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
            if conv is not None and (h < t if m in _LOWER_IS_WORSE else h):
                ex = b.examples.setdefault(m, [])
                if conv not in ex and (len(ex) < MAX_EXAMPLES or conv < ex[-1]):
                    bisect.insort(ex, conv)
                    del ex[MAX_EXAMPLES:]
        for m, x in values:
            hist = b.values.get(m)
            if hist is None:
                hist = b.values[m] = {}
            k = bin_of(x)
            hist[k] = hist.get(k, 0) + 1
            b.sums[m] = b.sums.get(m, 0.0) + x
        if event.time > self._agent_high.get(agent, -math.inf):
            self._agent_high[agent] = event.time
        if event.time > self._high.get(source, -math.inf):
            self._high[source] = event.time  # kept across drains: it is how far the source has been read
        lo, hi = self._offsets.get(source, (offset, offset))
        self._offsets[source] = (min(lo, offset), max(hi, offset))
        if offset > self._last_offset.get(source, -1):
            self._last_offset[source] = offset
        self.count += 1

    def _tenant(self, agent: str, raw: str | None) -> str:
        cap = self.tenant_caps.get(agent)
        if cap is None or not raw:
            return ""
        tenant = raw[:MAX_TENANT_CHARS]
        seen = self._tenants.setdefault(agent, set())
        if tenant in seen or tenant == OTHER:
            return tenant
        if len(seen) < cap:
            seen.add(tenant)
            return tenant
        return OTHER

    @property
    def highs(self) -> dict[str, float]:
        """The newest event time read from each source so far."""
        return dict(self._high)

    def add_many(self, events: Iterable[Event], source: str = "0") -> None:
        """Add events of ``source`` that follow the last one added, numbering their offsets on from it."""
        nxt = self._last_offset.get(source, -1) + 1
        for i, e in enumerate(events):
            self.add(e, source, nxt + i)

    def drain(self, progress: dict[str, float | None] | None = None) -> list[Partial]:
        """The accumulated partials (one per agent), leaving the aggregator empty.

        ``progress`` is the sender's view of its sources (see :class:`Partial`): how far each source with
        unread events has been read, or None for a source with nothing left unread, which each partial
        reports at its own agent's newest time (never another agent's: a history replayed for one agent
        while others run live must not be judged by their clock). By default, the newest event time read
        from each source so far.
        """
        base: dict[str, float | None] = dict(self._high) if progress is None else progress
        per: dict[str, list[Bucket]] = {}
        for (agent, *_), b in self._buckets.items():
            per.setdefault(agent, []).append(b)
        out = [Partial(agent, {src: self._agent_high[agent] if h is None else h for src, h in base.items()},
                       dict(self._offsets), buckets) for agent, buckets in sorted(per.items())]
        self._buckets.clear()
        self._offsets.clear()
        return out
