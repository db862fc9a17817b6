"""Bucket summaries: what the ingest stage sends and the stateful stage merges, on the summaries topic.

A :class:`Bucket` summarises one series (agent version, track, channel, tenant) over one bucket of event
time: counts per rate metric and a sparse log-spaced histogram per value metric. A :class:`Summary` carries
one agent's buckets from one poll (of any number of source partitions), with the event-time progress of
every source the sender reads, to the stateful stage keyed by agent.
"""

from __future__ import annotations

import msgspec

from detectors.exceedance import LogBins

__all__ = ["BINS", "MAX_EXAMPLES", "OTHER", "RELATIVE_ACCURACY", "Bucket", "Summary", "bin_of", "bin_value",
           "merge_bucket"]

#: Relative width of the value histograms' bins: 1/41 makes each bin 5% wide (``(1 + a) / (1 - a) = 1.05``),
#: fine enough for quantile thresholds, coarse enough that a bucket stays a few dozen integers.
RELATIVE_ACCURACY = 1 / 41
#: The one binning of values (:class:`detectors.exceedance.LogBins`, the quantile-exceedance test's): symmetric
#: for negatives, one bin for ``|x| <= 1e-6``, the end bins beyond ``1e12``.
BINS = LogBins(RELATIVE_ACCURACY)
MAX_EXAMPLES = 3
#: The segment that pools the values of a dimension beyond the first ``maxSegments``.
OTHER = "other"


def bin_of(x: float) -> int:
    """The histogram bin of ``x``: monotone non-decreasing in ``x``.

    >>> bin_of(0.0), bin_of(1.0) < bin_of(1.06), bin_of(-2.0) < bin_of(-1.0) < bin_of(0.0)
    (0, True, True)
    """
    return BINS.key(x)


def bin_value(b: int) -> float:
    """A representative value of bin ``b`` (its geometric middle)."""
    return BINS.value(b)


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
    # field -> value -> trials with that value (intent, model, finish_reason, error_type, tool); the field's
    # trials are the sum. Last, with a default, so that a bucket encoded before categories were kept still decodes.
    categories: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)

    def add_rate(self, metric: str, trials: int, harmful: int) -> None:
        """Count ``trials`` interactions of ``metric``, ``harmful`` of them harmful."""
        r = self.rates.get(metric)
        if r is None:
            self.rates[metric] = [trials, harmful]
        else:
            r[0] += trials
            r[1] += harmful


class Summary(msgspec.Struct, array_like=True):
    """One agent's buckets from one poll, with the sender's event-time progress.

    ``highs`` maps each source the sender reads to the event time up to which it has read it; a source
    with nothing left unread reports the agent's newest time, so that it never holds the watermark back.
    One poll gives one summary per agent, so its progress is applied only with all of its buckets.
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
        into.add_rate(m, t, h)
    for m, hist in other.values.items():
        mine = into.values.setdefault(m, {})
        for b, c in hist.items():
            mine[b] = mine.get(b, 0) + c
        into.sums[m] = into.sums.get(m, 0.0) + other.sums.get(m, 0.0)
    for f, counts in other.categories.items():
        into_f = into.categories.setdefault(f, {})
        for v, c in counts.items():
            into_f[v] = into_f.get(v, 0) + c
    for m, ids in other.examples.items():
        # the smallest ids, not the first to arrive: the same whatever the order summaries merge in
        into.examples[m] = sorted(set(into.examples.get(m, ())) | set(ids))[:MAX_EXAMPLES]
