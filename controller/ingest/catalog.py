"""The metric catalog: what vigil measures from each interaction, and which direction is harmful.

A *rate* metric turns an interaction into trials and harmful outcomes (one escalation in one trial; three
tool calls, one failed). A *value* metric yields numbers (latency, tokens), compared between versions
through the share of values beyond the baseline's running quantiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from controller.contracts.events import Interaction

__all__ = ["CATALOG", "CATEGORICAL", "MetricSpec", "categories", "observe", "spec_for"]

Direction = Literal["increase", "decrease"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    """Metric name as used in configs, evidence and Prometheus labels."""
    kind: Literal["rate", "value"]
    """``rate``: trials and harmful outcomes; ``value``: a number per observation."""
    direction: Direction
    """Which way is harmful for customers."""
    description: str
    """One line for the docs and the demo."""
    weight: float = 1.0
    """Share of the false-alarm budget of each of its tests, relative to the others' (``spec.analysis.metrics``
    may set it): the harms a rollback exists for first."""


CATALOG: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        MetricSpec("escalation_rate", "rate", "increase", "share of interactions handed to a human", weight=2.0),
        MetricSpec("abandonment_rate", "rate", "increase", "share of interactions the customer abandoned"),
        MetricSpec("resolution_rate", "rate", "decrease", "share of interactions resolved"),
        MetricSpec("error_rate", "rate", "increase", "share of interactions with outcome error or an error_type",
                   weight=2.0),
        MetricSpec("guardrail_block_rate", "rate", "increase", "share of interactions a guardrail blocked", weight=2.0),
        MetricSpec("tool_error_rate", "rate", "increase", "share of tool calls that failed"),
        MetricSpec("truncation_rate", "rate", "increase", "share of responses cut by finish reason length"),
        MetricSpec("low_csat_rate", "rate", "increase", "share of CSAT answers of 1 or 2"),
        MetricSpec("thumbs_down_rate", "rate", "increase", "share of thumbs answers that are down"),
        MetricSpec("latency_ms", "value", "increase", "end-to-end response latency"),
        MetricSpec("ttft_ms", "value", "increase", "time to first token"),
        MetricSpec("input_tokens", "value", "increase", "prompt tokens per interaction"),
        MetricSpec("output_tokens", "value", "increase", "completion tokens per interaction"),
        MetricSpec("cost_usd", "value", "increase", "cost per interaction"),
        MetricSpec("tool_latency_ms", "value", "increase", "latency of each tool call"),
        MetricSpec("sentiment", "value", "decrease", "customer sentiment, -1 to 1"),
    )
}

EVALUATION_PREFIX = "eval:"


def spec_for(name: str) -> MetricSpec | None:
    """The spec of a catalog metric or of an evaluation (``eval:<name>``, higher is better)."""
    if name in CATALOG:
        return CATALOG[name]
    if name.startswith(EVALUATION_PREFIX) and len(name) > len(EVALUATION_PREFIX):
        return MetricSpec(name, "value", "decrease", f"evaluation score {name[len(EVALUATION_PREFIX):]}")
    return None


def observe(d: Interaction) -> tuple[list[tuple[str, int, int]], list[tuple[str, float]]]:
    """The rate observations ``(metric, trials, harmful)`` and values ``(metric, x)`` of one interaction.

    >>> from controller.contracts.events import Interaction
    >>> rates, values = observe(Interaction(agent="a", version="v", outcome="escalated", latency_ms=120.0))
    >>> rates
    [('escalation_rate', 1, 1), ('abandonment_rate', 1, 0), ('resolution_rate', 1, 0), ('error_rate', 1, 0), \
('guardrail_block_rate', 1, 0)]
    >>> values
    [('latency_ms', 120.0)]
    """
    rates: list[tuple[str, int, int]] = []
    values: list[tuple[str, float]] = []
    outcome = d.outcome
    if outcome is not None and outcome != "in_progress":
        rates.append(("escalation_rate", 1, int(outcome == "escalated")))
        rates.append(("abandonment_rate", 1, int(outcome == "abandoned")))
        rates.append(("resolution_rate", 1, int(outcome == "resolved")))
    # An error and a block are harmful outcomes of any interaction: absence means none. Many producers set
    # error_type or guardrails only when one happens; counting only those events would make both rates 100%.
    rates.append(("error_rate", 1, int(outcome == "error" or d.error_type is not None)))
    rates.append(("guardrail_block_rate", 1, int(any(g.action == "block" for g in d.guardrails or ()))))
    if d.tool_calls:
        rates.append(("tool_error_rate", len(d.tool_calls), sum(t.error_type is not None for t in d.tool_calls)))
        for t in d.tool_calls:
            if t.latency_ms is not None:
                values.append(("tool_latency_ms", t.latency_ms))
    if d.finish_reasons is not None:
        rates.append(("truncation_rate", 1, int("length" in d.finish_reasons)))
    fb = d.feedback
    if fb is not None:
        if fb.csat is not None:
            rates.append(("low_csat_rate", 1, int(fb.csat <= 2)))
        if fb.thumbs is not None and fb.thumbs != 0:
            rates.append(("thumbs_down_rate", 1, int(fb.thumbs < 0)))
        if fb.sentiment is not None:
            values.append(("sentiment", fb.sentiment))
    for name in ("latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cost_usd"):
        x = getattr(d, name)
        if x is not None:
            values.append((name, float(x)))
    if d.evaluations:
        for e in d.evaluations:
            values.append((EVALUATION_PREFIX + e.name, e.score))
    return rates, values


#: The categorical fields: per value, its share of the field's trials is compared between the versions
#: (:mod:`controller.analysis.categorical`). Trials are the interactions that carry the field, except for
#: ``finish_reason`` (each finish reason listed, one per choice) and ``tool`` (each tool call, by name).
CATEGORICAL: tuple[str, ...] = ("intent", "model", "finish_reason", "error_type", "tool")


def categories(d: Interaction) -> list[tuple[str, str]]:
    """The ``(field, value)`` trials of one interaction's categorical fields: one label per trial, raw (the
    aggregator bounds them). Empty strings are no label.

    >>> from controller.contracts.events import Interaction, ToolCall
    >>> categories(Interaction(agent="a", version="v", intent="billing", finish_reasons=["tool_calls", "stop"],
    ...                        tool_calls=[ToolCall(name="lookup_order")]))
    [('intent', 'billing'), ('finish_reason', 'tool_calls'), ('finish_reason', 'stop'), ('tool', 'lookup_order')]
    """
    out: list[tuple[str, str]] = []
    if d.intent:
        out.append(("intent", d.intent))
    if d.model:
        out.append(("model", d.model))
    if d.finish_reasons:
        out.extend(("finish_reason", r) for r in d.finish_reasons if r)
    if d.error_type:
        out.append(("error_type", d.error_type))
    if d.tool_calls:
        out.extend(("tool", t.name) for t in d.tool_calls if t.name)
    return out
