"""Pre-aggregation: raw events into per-series one-second bucket summaries (the ingest stage's output).

The raw event path is the hot one, so it only counts: per (agent, version, track, channel, second) it
keeps trials and harmful outcomes per rate metric, and a sparse log-spaced histogram per value metric.
For an agent whose rollout segments its tests by tenant, the tenant is part of the series too (cut to
:data:`MAX_TENANT_CHARS`, and only the first ``maxSegments`` tenants seen by this process are kept apart,
the others pooled as ``other``), so the state per second stays bounded. The categorical fields (intent, model,
finish reasons, error type, tool names) are counted per value, each value cut to :data:`MAX_CATEGORY_CHARS`
and only the first :data:`~controller.config.MAX_CATEGORIES_LIMIT` values per agent and field kept apart (the
others pooled as ``other``); nothing else of an event is kept.
The buckets are handed out as :class:`~controller.ingest.buckets.Summary` records, one per agent per poll.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

from controller.config import MAX_CATEGORIES_LIMIT, Rollout
from controller.contracts.events import Event
from controller.ingest.buckets import MAX_EXAMPLES, OTHER, Bucket, Summary, bin_of
from controller.ingest.catalog import CATALOG, categories, observe

__all__ = ["MAX_CATEGORY_CHARS", "MAX_TENANT_CHARS", "Aggregator", "category_label", "tenant_caps"]

# rate metrics whose counted outcome is the good one (resolutions): their examples are the misses
_LOWER_IS_WORSE = frozenset(s.name for s in CATALOG.values() if s.kind == "rate" and s.direction == "decrease")
#: Characters of a tenant name kept: a tenant is an identifier, and an unbounded one would be a memory hole.
MAX_TENANT_CHARS = 64
#: Characters of a category value kept (intents, models, finish reasons, error types and tool names are labels).
MAX_CATEGORY_CHARS = 64


def category_label(raw: str) -> str:
    """A category value as kept: cut to :data:`MAX_CATEGORY_CHARS`, control characters replaced by ``?`` (a label
    goes into test names, decisions and Prometheus labels).

    >>> category_label("billing"), category_label("a\\nb"), len(category_label("x" * 500))
    ('billing', 'a?b', 64)
    """
    cut = raw[:MAX_CATEGORY_CHARS]
    return cut if cut.isprintable() else "".join(c if c.isprintable() else "?" for c in cut)


def tenant_caps(rollouts: Iterable[Rollout]) -> dict[str, int]:
    """Agents whose rollout segments by tenant, with how many tenants each keeps apart (``maxSegments``)."""
    return {r.agent: r.analysis.max_segments for r in rollouts if r.agent and "tenant" in r.analysis.segments}


class Aggregator:
    """Accumulates events of one poll into per-agent buckets; :meth:`drain` hands them out as summaries.

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
        # the first MAX_CATEGORIES_LIMIT values seen per agent and categorical field, kept across drains (the
        # analysis admits at most that many, busiest first); later values are pooled as "other"
        self._categories: dict[tuple[str, str], set[str]] = {}
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
            b.add_rate(m, t, h)
            if conv is not None and (h < t if m in _LOWER_IS_WORSE else h):
                ex = b.examples.setdefault(m, [])
                if conv not in ex and (len(ex) < MAX_EXAMPLES or conv < ex[-1]):
                    bisect.insort(ex, conv)
                    del ex[MAX_EXAMPLES:]
        for f, raw in categories(d):
            v = self._category(agent, f, raw)
            counts = b.categories.get(f)
            if counts is None:
                counts = b.categories[f] = {}
            counts[v] = counts.get(v, 0) + 1
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

    def _category(self, agent: str, field: str, raw: str) -> str:
        label = category_label(raw)
        seen = self._categories.get((agent, field))
        if seen is None:
            seen = self._categories[(agent, field)] = set()
        if label in seen or label == OTHER:
            return label
        if len(seen) < MAX_CATEGORIES_LIMIT:
            seen.add(label)
            return label
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

    def drain(self, progress: dict[str, float | None] | None = None) -> list[Summary]:
        """The accumulated summaries (one per agent), leaving the aggregator empty.

        ``progress`` is the sender's view of its sources (see :class:`Summary`): how far each source with
        unread events has been read, or None for a source with nothing left unread, which each summary
        reports at its own agent's newest time (never another agent's: a history replayed for one agent
        while others run live must not be judged by their clock). By default, the newest event time read
        from each source so far.
        """
        base: dict[str, float | None] = dict(self._high) if progress is None else progress
        per: dict[str, list[Bucket]] = {}
        for (agent, *_), b in self._buckets.items():
            per.setdefault(agent, []).append(b)
        out = [Summary(agent, {src: self._agent_high[agent] if h is None else h for src, h in base.items()},
                       dict(self._offsets), buckets) for agent, buckets in sorted(per.items())]
        self._buckets.clear()
        self._offsets.clear()
        return out
