"""Segments: the values of each dimension (``channel``, ``tenant``) whose traffic is tested apart.

Only the first ``max_segments`` values of a dimension are tested apart, admitted busiest first among those
that appear in the same bucket; later ones are pooled into one ``other`` segment. A segment test is named
after its pooled test and its segment: ``escalation_rate[tenant=acme]``.
"""

from __future__ import annotations

from typing import get_args

from controller.contracts.events import Channel
from controller.ingest.buckets import OTHER, Bucket

__all__ = ["CHANNELS_APART", "Segments", "suffix"]

#: The contract's channels other than "other": more can never be told apart, so the channel cap stops there.
CHANNELS_APART = len(get_args(Channel)) - 1


def suffix(dimension: str, value: str) -> str:
    """What a segment adds to the name of its pooled test."""
    return f"[{dimension}={value}]"


def _raw(dimension: str, b: Bucket) -> str:
    return b.channel if dimension == "channel" else b.tenant


class Segments:
    """The segment values of one rollout: ``caps`` values per dimension at most, besides the pooled ``other``."""

    def __init__(self, caps: dict[str, int]) -> None:
        self.caps = caps
        self.values: dict[str, list[str]] = {d: [] for d in caps}  # in their order of admission
        self._admitted: dict[str, set[str]] = {d: set() for d in caps}

    @classmethod
    def of_settings(cls, dimensions: tuple[str, ...] | list[str], max_segments: int) -> Segments:
        """The segments of ``dimensions``, each capped at ``max_segments`` (the channels at the contract's)."""
        return cls({d: min(max_segments, CHANNELS_APART) if d == "channel" else max_segments for d in dimensions})

    def admit(self, buckets: list[Bucket], versions: tuple[str, str]) -> None:
        """Admit the values first seen in these buckets (of ``versions`` only), busiest first, while their
        dimension has room."""
        for dim, cap in self.caps.items():
            values, admitted = self.values[dim], self._admitted[dim]
            if len(values) >= cap:
                continue
            traffic: dict[str, int] = {}
            for b in buckets:
                raw = _raw(dim, b)
                if raw and raw != OTHER and raw not in admitted and b.version in versions:
                    traffic[raw] = traffic.get(raw, 0) + b.n
            for v in sorted(traffic, key=lambda v: (-traffic[v], v))[:cap - len(values)]:
                values.append(v)
                admitted.add(v)

    def of(self, dimension: str, b: Bucket) -> str | None:
        """The segment of a bucket in a dimension; None for a bucket without a tenant."""
        raw = _raw(dimension, b)
        if not raw:
            return None
        return raw if raw in self._admitted[dimension] else OTHER

    def suffixes(self, b: Bucket) -> list[str]:
        """The name suffixes of the segments a bucket belongs to, one per dimension it has a value in."""
        return [suffix(d, v) for d in self.caps if (v := self.of(d, b)) is not None]

    def load(self, caps: dict[str, int], values: dict[str, list[str]]) -> None:
        """The caps and admitted values of a checkpoint."""
        self.caps = caps
        self.values = {d: [str(v) for v in values.get(d, [])] for d in caps}
        self._admitted = {d: set(vs) for d, vs in self.values.items()}
