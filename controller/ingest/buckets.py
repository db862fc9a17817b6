"""Bucket summaries: what the ingest stage sends and the stateful stage merges, on the summaries topic.

A :class:`Bucket` summarises one series (agent version, track, channel, tenant) over one bucket of event
time: counts per rate metric and a sparse log-spaced histogram per value metric. A :class:`Summary` carries
one agent's buckets from one poll (of any number of source partitions), with the event-time progress of
every source the sender reads, to the stateful stage keyed by agent.
"""

from __future__ import annotations

import math

import msgspec

__all__ = ["MAX_EXAMPLES", "OTHER", "Bucket", "Summary", "bin_of", "bin_value", "merge_bucket"]

# Values are binned on a log scale with 5% steps (symmetric for negatives, one bin for |x| < 1e-6):
# fine enough for quantile thresholds, coarse enough that a bucket stays a few dozen integers.
_EPS = 1e-6
_LOG_STEP = math.log(1.05)
_LOG_EPS = math.log(_EPS)
MAX_EXAMPLES = 3
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
    for m, ids in other.examples.items():
        # the smallest ids, not the first to arrive: the same whatever the order summaries merge in
        into.examples[m] = sorted(set(into.examples.get(m, ())) | set(ids))[:MAX_EXAMPLES]
