"""Strata: one bucket's 2x2 tables, one per test and stratum (a channel), canary against stable.

A table is ``(n_canary, harm_canary, n_stable, harm_stable)``. The pooled tests see every channel, a segment
test the channels of its segment's traffic (for a tenant, its traffic in each channel; for a channel, that
channel). A stratum with only one version carries no evidence and gives no table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from controller.analysis.segments import Segments, suffix
from controller.ingest.buckets import Bucket

__all__ = ["Counts", "Table", "TestKey", "stratify", "sum_counts"]

Counts = dict[str, tuple[str, int, int]]  # pooled test -> (metric, n, harmful) of one bucket
Table = tuple[int, int, int, int]  # n_canary, harm_canary, n_stable, harm_stable


class TestKey(NamedTuple):
    """What a row of :func:`stratify` feeds: a pooled test, or its restriction to one segment."""

    name: str  # ``base``, or ``base[dimension=value]``
    metric: str
    base: str  # the pooled test: ``escalation_rate``, ``latency_ms>p90``
    dimension: str | None = None
    value: str | None = None


def sum_counts(parts: list[Counts]) -> Counts:
    """The counts of several buckets of one stratum and side, added per test."""
    if len(parts) == 1:
        return parts[0]
    out: Counts = {}
    for part in parts:
        for base, (m, n, k) in part.items():
            o = out.get(base)
            out[base] = (m, n, k) if o is None else (m, o[1] + n, o[2] + k)
    return out


def stratify(buckets: list[Bucket], canary: str, stable: str, counts: Callable[[Bucket], Counts],
             segments: Segments) -> tuple[list[TestKey], list[Table]]:
    """Per test and stratum, the table of one bucket's ``buckets``; ``counts`` gives a bucket's counts."""
    # (dimension, segment, channel) -> per side, the counts of each bucket of that stratum
    strata: dict[tuple[str | None, str | None, str], tuple[list[Counts], list[Counts]]] = {}
    for b in buckets:
        if b.version == canary:
            side = 0
        elif b.version == stable:
            side = 1
        else:
            continue
        c = counts(b)
        strata.setdefault((None, None, b.channel), ([], []))[side].append(c)
        for dim in segments.caps:
            seg = segments.of(dim, b)
            if seg is not None:
                strata.setdefault((dim, seg, b.channel), ([], []))[side].append(c)
    keys: list[TestKey] = []
    rows: list[Table] = []
    for (sdim, sseg, _), (cs, ss) in strata.items():
        if not cs or not ss:
            continue  # a stratum with one side carries no evidence
        on_canary, on_stable = sum_counts(cs), sum_counts(ss)
        for base, (m, nc, kc) in on_canary.items():
            r = on_stable.get(base)
            if r is None:
                continue
            if sdim is None or sseg is None:
                keys.append(TestKey(base, m, base))
            else:
                keys.append(TestKey(base + suffix(sdim, sseg), m, base, sdim, sseg))
            rows.append((nc, kc, r[1], r[2]))
    return keys, rows
