"""Strata: the 2x2 tables of the tests, one per test and stratum, canary against stable.

A table is ``(n_canary, harm_canary, n_stable, harm_stable)``. A stratum is one channel over a stretch of
event time (:class:`Stratum`: ``spec.analysis.stratum``, cut early where the canary's weight changes). The
pooled tests see every channel, a segment test the channels of its segment's traffic (for a tenant, its
traffic in each channel; for a channel, that channel). A stratum with only one version carries no evidence
and gives no table.

Why a table may pool many buckets: when each interaction goes to the canary with the same probability
throughout a stratum (a fixed traffic weight, assigned per interaction or per conversation), which version
served an interaction is independent of when it came and of everything that happened to both versions then
(an incident, a busy hour). So, if the canary is no worse, the stratum's table given its margins is
hypergeometric, exactly, however the base rate moves inside it: the conditional test stays exact, and the
table holds many stable observations for every canary one, instead of one or two per second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.special import xlogy

from controller.analysis.segments import Segments, suffix
from controller.ingest.buckets import Bucket

__all__ = ["SHARE_CHANGE_LLR", "Counts", "Stratum", "Table", "TestKey", "share_split", "stratify"]

Counts = dict[str, tuple[str, int, int]]  # pooled test -> (metric, n, harmful) of one bucket
Table = tuple[int, int, int, int]  # n_canary, harm_canary, n_stable, harm_stable
Cell = tuple[str | None, str | None, str]  # (dimension, segment, channel); (None, None, channel) when pooled


class TestKey(NamedTuple):
    """What a row of :func:`stratify` feeds: a pooled test, or its restriction to one segment."""

    name: str  # ``base``, or ``base[dimension=value]``
    metric: str
    base: str  # the pooled test: ``escalation_rate``, ``latency_ms>p90``
    dimension: str | None = None
    value: str | None = None


def _add(into: Counts, part: Counts) -> None:
    for base, (m, n, k) in part.items():
        o = into.get(base)
        into[base] = (m, n, k) if o is None else (m, o[1] + n, o[2] + k)


#: Log-likelihood ratio at which the canary's share of a stratum's traffic is taken to have changed inside it
#: (a split of the stratum against one share throughout): the stratum is then cut where the share changed.
SHARE_CHANGE_LLR = 8.0


def _llr(c: NDArray[np.float64], n: NDArray[np.float64]) -> NDArray[np.float64]:
    """Binomial log-likelihood of ``c`` canary interactions out of ``n`` at their own share."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(xlogy(c, c / n) + xlogy(n - c, (n - c) / n))  # type: ignore[no-any-return]


def share_split(shares: list[tuple[int, int]], threshold: float = SHARE_CHANGE_LLR) -> int | None:
    """Where the canary's share of traffic changed in a sequence of buckets ``(canary, both versions)``: the
    first bucket after the change, when the best single split explains the counts better than one share by
    more than ``threshold`` (log-likelihood ratio); None when one share explains them.

    >>> share_split([(1, 10)] * 20 + [(5, 10)] * 5)
    20
    >>> share_split([(1, 10), (2, 10), (0, 10), (1, 10)]) is None
    True
    """
    if len(shares) < 2:
        return None
    arr = np.asarray(shares, dtype=np.float64)
    c, n = np.cumsum(arr[:, 0]), np.cumsum(arr[:, 1])
    whole = _llr(c[-1:], n[-1:])[0]
    c1, n1 = c[:-1], n[:-1]
    gain = _llr(c1, n1) + _llr(c[-1] - c1, n[-1] - n1) - whole
    j = int(np.argmax(gain))
    return j + 1 if gain[j] > threshold else None


class Stratum:
    """The counts of one stratum so far, per bucket, cell and side; ``start`` its first bucket (None: empty).

    Each bucket's counts are kept apart until the stratum is fed, so that when the canary's share of traffic
    turns out to have changed inside it (:func:`share_split`, on the versions' interaction counts only, never
    on an outcome), the stratum is cut there (:meth:`split`).
    """

    def __init__(self) -> None:
        self.parts: list[tuple[int, dict[Cell, tuple[Counts, Counts]]]] = []
        self.shares: list[tuple[int, int]] = []  # per bucket: canary interactions, both versions'

    @property
    def start(self) -> int | None:
        return self.parts[0][0] if self.parts else None

    def add(self, start: int, buckets: list[Bucket], canary: str, stable: str,
            counts: Callable[[Bucket], Counts], segments: Segments) -> None:
        """Add the bucket at ``start``, of ``buckets``; ``counts`` gives a bucket's counts."""
        cells: dict[Cell, tuple[Counts, Counts]] = {}
        nc = ns = 0
        for b in buckets:
            if b.version == canary:
                side = 0
                nc += b.n
            elif b.version == stable:
                side = 1
                ns += b.n
            else:
                continue
            c = counts(b)
            _add(cells.setdefault((None, None, b.channel), ({}, {}))[side], c)
            for dim in segments.caps:
                seg = segments.of(dim, b)
                if seg is not None:
                    _add(cells.setdefault((dim, seg, b.channel), ({}, {}))[side], c)
        self.parts.append((start, cells))
        self.shares.append((nc, nc + ns))

    def split(self) -> Stratum | None:
        """The buckets before a change of the canary's share (:func:`share_split`), removed from this stratum
        as a stratum of their own; None when the share did not change."""
        j = share_split(self.shares)
        if j is None:
            return None
        head = Stratum()
        head.parts, self.parts = self.parts[:j], self.parts[j:]
        head.shares, self.shares = self.shares[:j], self.shares[j:]
        return head

    def tables(self) -> tuple[list[TestKey], list[Table]]:
        """Per test and cell with both versions, the stratum's table."""
        pooled: dict[Cell, tuple[Counts, Counts]] = {}
        for _, cells in self.parts:
            for cell, (c, s) in cells.items():
                into = pooled.setdefault(cell, ({}, {}))
                _add(into[0], c)
                _add(into[1], s)
        keys: list[TestKey] = []
        rows: list[Table] = []
        for (sdim, sseg, _), (on_canary, on_stable) in pooled.items():
            if not on_canary or not on_stable:
                continue  # a stratum with one side carries no evidence
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

    def to_state(self) -> dict[str, Any]:
        def side(c: Counts) -> dict[str, list[Any]]:
            return {k: list(v) for k, v in c.items()}
        return {"parts": [[t, [[d, s, ch, side(c), side(st)] for (d, s, ch), (c, st) in cells.items()]]
                          for t, cells in self.parts],
                "shares": [list(x) for x in self.shares]}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Stratum:
        """What :meth:`to_state` gave; an empty stratum for None (a checkpoint written before strata pooled)."""
        out = cls()
        if state is None:
            return out

        def side(c: dict[str, list[Any]]) -> Counts:
            return {k: (str(m), int(n), int(h)) for k, (m, n, h) in c.items()}
        for t, cells in state["parts"]:
            out.parts.append((int(t), {(d, s, ch): (side(c), side(st)) for d, s, ch, c, st in cells}))
        out.shares = [(int(a), int(b)) for a, b in state["shares"]]
        return out


def stratify(buckets: list[Bucket], canary: str, stable: str, counts: Callable[[Bucket], Counts],
             segments: Segments) -> tuple[list[TestKey], list[Table]]:
    """Per test and cell, the table of one bucket's ``buckets`` (a stratum of one bucket)."""
    s = Stratum()
    s.add(0, buckets, canary, stable, counts, segments)
    return s.tables()
