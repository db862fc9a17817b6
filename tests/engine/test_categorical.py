"""Category shifts end to end: simulated traffic (``vigil simulate``'s ``intent_shift`` and ``model_switch``
faults) through the aggregator and the engine to decisions, verdicts, the agents view and a resumed checkpoint."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from controller.config import parse_rollout
from controller.contracts.decisions import Decision
from controller.engine.core import Engine
from controller.engine.verdict import published
from controller.http.server import VigilCollector, agents_view
from controller.ingest.buckets import Summary
from controller.runtime.changelog import decode_state, encode_state
from controller.runtime.stats import PipelineStats
from controller.tools.simulate import Fault, SimConfig
from tests.support.simulated import simulated_summaries
from tests.support.traffic import run

AGENT = "support-bot"
SECONDS = 300.0


def engine(**categorical: Any) -> Engine:
    spec: dict[str, Any] = {"agent": AGENT, "stable": {"version": "v1"}, "canary": {"version": "v2"}}
    if categorical:
        spec["analysis"] = {"categorical": categorical}
    return Engine([parse_rollout({"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout",
                                  "metadata": {"name": "bot"}, "spec": spec})])


def stream(*faults: Fault, seed: int = 7) -> list[Summary]:
    return simulated_summaries(SimConfig(rate=40.0, duration=SECONDS, seed=seed, faults=faults))


@pytest.fixture(scope="module")
def intent_shift() -> list[Summary]:
    return stream(Fault("intent_shift", onset=30.0))


def categorical(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if "_share[" in d.reason]


def test_an_intent_shift_alerts_by_default_and_never_rolls_back(intent_shift: list[Summary]) -> None:
    decisions = run(engine(), intent_shift)
    assert [d.action for d in decisions if d.action not in ("alert",)] == []
    shift = categorical(decisions)
    assert shift and {d.action for d in shift} == {"alert"}
    first = next(d for d in shift if "intent_share[tech_support]" in d.reason)
    assert first.reason == "intent_share[tech_support] of canary v2 differs from stable v1 (categorical action alert)"
    (ev,) = first.evidence
    assert ev.metric == "intent_share[tech_support]" and ev.statistic >= ev.threshold and ev.p_value < 1e-3
    assert ev.canary_value is not None and ev.stable_value is not None and ev.canary_value > 1.4 * ev.stable_value
    assert ev.n_canary > 0 and ev.n_stable > ev.n_canary
    names = [d.evidence[0].metric for d in shift]
    assert len(names) == len(set(names))  # an alert once per test
    doc = published(run_to_end(intent_shift))
    assert doc.verdict == "inconclusive" and not doc.rollback and "intent_share[tech_support]" in doc.alarms


def run_to_end(summaries: list[Summary], **categorical: Any) -> Any:
    e = engine(**categorical)
    run(e, summaries)
    return e.agents[AGENT]


def test_an_intent_shift_rolls_back_when_configured_to_act(intent_shift: list[Summary]) -> None:
    decisions = run(engine(action="rollback"), intent_shift)
    (rollback,) = [d for d in decisions if d.action == "rollback"]
    assert rollback.reason.startswith("intent_share[") and " differs from stable v1 (anytime p=" in rollback.reason
    assert all(e.n_canary >= 50 and e.metric.startswith(("intent_share[", "tool_share[")) for e in rollback.evidence)
    doc = published(run_to_end(intent_shift, action="rollback"))
    assert doc.verdict == "unhealthy" and doc.rollback


def test_fields_leave_out_what_is_not_compared(intent_shift: list[Summary]) -> None:
    assert categorical(run(engine(fields=["model", "error_type"]), intent_shift)) == []
    assert categorical(run(engine(fields=[]), intent_shift)) == []


def test_a_model_switch_alerts_on_the_model_share() -> None:
    decisions = categorical(run(engine(), stream(Fault("model_switch", onset=30.0))))
    assert {d.evidence[0].metric for d in decisions} >= {"model_share[gpt-4.1-mini]", "model_share[gpt-4o-mini]"}
    switched = next(d.evidence[0] for d in decisions if d.evidence[0].metric == "model_share[gpt-4.1-mini]")
    assert switched.stable_value == 0.0 and switched.canary_value is not None and switched.canary_value > 0.5


def test_a_healthy_canary_with_the_same_category_mix_gives_no_categorical_decision() -> None:
    st = run_to_end(stream(seed=8))
    assert st.analysis.categorical is not None
    tested = [n for n in st.analysis.tests if st.analysis.is_categorical(n)]
    assert {n.split("[")[0] for n in tested} == {"intent_share", "model_share", "finish_reason_share",
                                                 "error_type_share", "tool_share"}
    assert [n for n in tested if st.analysis.tests[n].alarm] == []


def test_the_agents_view_and_prometheus_show_the_categorical_tests(intent_shift: list[Summary]) -> None:
    e = engine()
    run(e, intent_shift)
    window = agents_view(e)[AGENT]["window"]
    assert window["intent_share[tech_support]"]["n_canary"] > 0
    registry = CollectorRegistry()
    registry.register(VigilCollector(PipelineStats(), lambda: e))
    text = generate_latest(registry).decode()
    assert 'vigil_test_statistic{agent="support-bot",test="intent_share[tech_support]",version="v2"}' in text


def test_a_resumed_checkpoint_decides_like_an_uninterrupted_run(intent_shift: list[Summary]) -> None:
    expected = run(engine(), intent_shift)
    assert categorical(expected)
    at = len(intent_shift) // 3
    first = engine()
    before = run(first, intent_shift[:at], flush=False)
    second = engine()
    for agent in first.agents:
        second.load_agent(decode_state(encode_state(first.agent_state(agent))))
    assert second.agents[AGENT].analysis.categorical is not None
    assert before + run(second, intent_shift[at:]) == expected
