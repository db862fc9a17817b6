"""The live pipeline's counters, kept by its stages and read at scrape time by the metrics collector."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["PipelineStats"]


@dataclass
class PipelineStats:
    """Counters read at scrape time by the metrics collector."""

    events: int = 0
    summaries_sent: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    summaries: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    checkpoints: int = 0
    verdicts: int = 0
    restored_agents: int = 0
    checkpoints_unreadable: int = 0
    ingest_batches: int = 0
    last_event_time: float = 0.0
