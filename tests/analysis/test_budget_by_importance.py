"""The false-alarm budget by importance: each test's share in proportion to its metric's weight (the catalog's:
2 for escalation, error and guardrail-block rates, 1 for the others; halved for a non-critical metric;
``metrics[].weight`` overrides), split over the metrics the events carry when the first stratum is fed, with a
reserve for the ones that appear later; the union bound over every test that can exist stays at ``alpha``."""

from __future__ import annotations

import json
import math

import pytest

from controller.analysis import categorical
from controller.analysis.canary import CanaryAnalysis
from controller.config import Analysis, MetricOverride, Rollout
from controller.contracts.decisions import seconds
from controller.engine.core import Engine
from tests.support.traffic import T0, rollout, run, summaries, traffic


def analysed(settings: Analysis, seconds_: int = 40) -> CanaryAnalysis:
    """The analysis of 40 s of track-mode traffic (outcomes, latency and output tokens only)."""
    eng = Engine(default=Rollout(analysis=settings))
    run(eng, summaries(traffic(seed=51, seconds=seconds_, escalation=(0.1, 0.1))))
    a = eng.agents["bot"].analysis
    assert a is not None
    return a


def test_levels_follow_the_weights() -> None:
    a = analysed(Analysis())
    esc, res = a.budget.level("escalation_rate"), a.budget.level("resolution_rate")
    assert esc == pytest.approx(2 * res)
    assert a.budget.level("latency_ms>p90") == pytest.approx(res)
    custom = analysed(Analysis(metrics=(MetricOverride("escalation_rate", weight=3.0),
                                        MetricOverride("resolution_rate", critical=False))))
    # explicit metrics: the whole budget of the rate and value tests to them, 3 to 0.5 (the category-share
    # tests keep their own share)
    rest = 0.01 * (1 - categorical.SHARE)
    assert custom.budget.level("escalation_rate") == pytest.approx(rest * 3 / 3.5)
    assert custom.budget.level("resolution_rate") == pytest.approx(rest * 0.5 / 3.5)


def test_the_budget_is_split_over_the_metrics_present_when_the_first_stratum_is_fed() -> None:
    a = analysed(Analysis())
    assert a.allocated
    known = set(a.budget.to_state()["known"])  # type: ignore[call-overload]
    # the traffic carries outcomes, latency and output tokens: no CSAT, tools, finish reasons or ttft
    assert {"escalation_rate", "error_rate", "latency_ms>p90", "output_tokens>p50"} <= known
    assert not known & {"low_csat_rate", "tool_error_rate", "truncation_rate", "ttft_ms>p90"}
    # so each present test gets more than it would with every catalog metric known in advance
    every = Analysis(metrics=())
    whole = CanaryAnalysis("v1", "v2", every)  # never fed: its budget still spans the whole catalog
    assert a.budget.level("escalation_rate") > whole.budget.level("escalation_rate")
    # a metric that appears later draws from the reserve; the levels of all tests stay within alpha
    late = a.budget.level("low_csat_rate")
    rest = 0.01 * (1 - categorical.SHARE)  # the rate and value tests' part; the category shares have the rest
    assert 0 < late <= rest * 0.2 / 2
    spent = math.fsum(a.budget.level(n) for n in known) + rest * 0.2
    assert spent <= rest + 1e-12


def test_a_checkpoint_before_the_first_stratum_is_fed_keeps_what_was_seen() -> None:
    items = summaries(traffic(seed=52, seconds=60, escalation=(0.1, 0.1)))
    whole = Engine()
    run(whole, items)
    first = Engine()
    cut = next(i for i, p in enumerate(items) if p.buckets and p.buckets[0].start >= T0 + 15)
    run(first, items[:cut], flush=False)
    state = json.loads(json.dumps(first.agent_state("bot")))
    analysis = state["canaries"][0]["analysis"]
    assert analysis["allocated"] is False and "escalation_rate" in analysis["present"]
    second = Engine()
    second.load_agent(state)
    run(second, items[cut:])
    assert second.agent_state("bot") == whole.agent_state("bot")


def test_a_heavier_weight_acts_sooner() -> None:
    stream = summaries(traffic(seed=53, seconds=900, rate=8.0, escalation=(0.10, 0.18)))
    at = {}
    for w in (0.25, 8.0):
        # without category-share tests, so that the three metrics share the whole budget
        d = [x for x in run(Engine([rollout(metrics=[{"name": "escalation_rate", "weight": w},
                                                     {"name": "latency_ms"}, {"name": "resolution_rate"}],
                                            categorical={"fields": []})]),
                            stream) if x.action == "rollback"]
        assert d, w
        at[w] = seconds(d[0].time)
    assert at[8.0] < at[0.25]
