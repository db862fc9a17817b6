"""Tests of the stateful stage (``controller.engine.core``) with its analysis and policy, and of ``vigil replay``.

Traffic is synthetic: events are built directly, one poll per second of event time, with outcomes drawn
from a seeded numpy generator, then pre-aggregated with :class:`Aggregator` as the ingest stage does
(``tests/support/traffic.py``).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from controller.contracts.decisions import Decision, iso
from controller.contracts.events import Event
from controller.engine.core import Engine
from controller.ingest.buckets import Summary
from controller.replay import ReplayStats, replay
from controller.tools.simulate import Fault, SimConfig, write_jsonl
from tests.support.traffic import T0, Traffic, configured, rollout, run, summaries, traffic


def epoch(decision: Decision) -> float:
    return datetime.strptime(decision.time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


# --- rollback on harm -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tripled() -> Traffic:
    return traffic(seed=1, seconds=300, escalation=(0.10, 0.30))


def test_tripled_escalation_rate_is_rolled_back(tripled: Traffic) -> None:
    decisions = run(Engine(), summaries(tripled))
    assert [d.action for d in decisions].count("rollback") == 1
    rb = decisions[-1]
    assert rb.action == "rollback" and rb.agent == "bot" and rb.version == "v2"
    assert rb.weights == {"v1": 100.0, "v2": 0.0}
    assert "escalation_rate" in rb.reason and "v2" in rb.reason and "v1" in rb.reason
    evidence = {e.metric: e for e in rb.evidence}
    esc = evidence["escalation_rate"]
    assert esc.detector == "mixture-fisher"
    # the alarm is kept once reached: the anytime p-value is below the test's level, exp(-threshold)
    assert esc.p_value <= math.exp(-esc.threshold) * 1.001 and esc.p_value < 0.01
    assert esc.n_canary >= 50  # the default minSamples
    assert esc.canary_value is not None and esc.stable_value is not None
    assert esc.canary_value > 2 * esc.stable_value
    assert rb.examples and set(rb.examples) <= tripled.ids("canary", "escalated")
    assert T0 < epoch(rb) <= T0 + 120  # detected well within the stream


def test_rollback_is_final(tripled: Traffic) -> None:
    engine = Engine()
    items = summaries(tripled)
    decisions = run(engine, items)
    st = engine.agents["bot"]
    assert st.policy is not None and st.policy.phase == "rolled_back"
    assert run(engine, summaries(traffic(seed=2, seconds=30, escalation=(0.1, 0.9), start=T0 + 400))) == []
    assert decisions[-1].action == "rollback"


def test_no_decision_without_a_canary() -> None:
    only_stable = traffic(seed=3, seconds=60, share=0.0)
    engine = Engine()
    assert run(engine, summaries(only_stable)) == []
    assert engine.agents["bot"].policy is None


def test_healthy_canary_is_not_rolled_back() -> None:
    healthy = traffic(seed=4, seconds=600, escalation=(0.12, 0.12))
    engine = Engine()
    assert run(engine, summaries(healthy)) == []
    analysis = engine.agents["bot"].analysis
    assert analysis is not None and analysis.buckets_seen >= 595  # it did look, at every second
    expected = {"escalation_rate", "resolution_rate", "latency_ms>p90", "output_tokens>p50"}
    assert expected <= set(analysis.tests)
    assert all(not t.alarm for t in analysis.tests.values())


def test_upstream_incident_hitting_both_versions_is_not_rolled_back() -> None:
    # during the incident both versions escalate half the time, and the canary takes 40% of the traffic
    stream = traffic(seed=5, seconds=400, escalation=(0.10, 0.10), incident=(150, 250, 0.5, 0.4))
    canary = [e.data.outcome == "escalated" for e in stream.events if e.data.track == "canary"]
    stable = [e.data.outcome == "escalated" for e in stream.events if e.data.track == "stable"]
    assert np.mean(canary) > 1.5 * np.mean(stable)  # a pooled comparison would blame the canary
    assert run(Engine(), summaries(stream)) == []


@pytest.fixture(scope="module")
def resolution_drop() -> tuple[Traffic, list[Decision]]:
    stream = traffic(seed=6, seconds=300, resolution=(0.85, 0.55))
    return stream, run(Engine([rollout(metrics=[{"name": "resolution_rate"}])]), summaries(stream))


def test_resolution_drop_is_rolled_back(resolution_drop: tuple[Traffic, list[Decision]]) -> None:
    stream, decisions = resolution_drop
    assert [d.action for d in decisions][-1] == "rollback"
    rb = decisions[-1]
    (ev,) = rb.evidence
    assert ev.metric == "resolution_rate"
    assert ev.canary_value is not None and ev.stable_value is not None
    # the test counts misses, the evidence shows the resolution rate itself
    assert ev.canary_value == pytest.approx(0.55, abs=0.2) and ev.stable_value == pytest.approx(0.85, abs=0.1)
    assert rb.examples and set(rb.examples) <= stream.ids("canary")


def test_resolution_rollback_examples_are_unresolved(resolution_drop: tuple[Traffic, list[Decision]]) -> None:
    stream, decisions = resolution_drop
    assert set(decisions[-1].examples) <= stream.ids("canary", "abandoned")


# --- alerts ---------------------------------------------------------------------------------------------
def test_alarm_with_too_few_samples_alerts_instead_of_rolling_back(tripled: Traffic) -> None:
    decisions = run(Engine([rollout(minSamples=1_000_000)]), summaries(tripled))
    assert decisions and all(d.action == "alert" for d in decisions)
    alerted = [d.evidence[0].metric for d in decisions]
    assert "escalation_rate" in alerted
    assert len(alerted) == len(set(alerted))  # once per test
    esc = next(d for d in decisions if d.evidence[0].metric == "escalation_rate")
    assert "too few canary samples" in esc.reason
    assert esc.weights == {"v1": 100.0, "v2": 0.0}  # watch only: no weight change
    assert esc.examples and set(esc.examples) <= tripled.ids("canary", "escalated")


def test_metric_min_samples_override_applies_per_metric(tripled: Traffic) -> None:
    r = rollout(metrics=[{"name": "escalation_rate", "minSamples": 1_000_000}, {"name": "error_rate"}])
    decisions = run(Engine([r]), summaries(tripled))
    assert [d.action for d in decisions] == ["alert"]


def test_non_critical_metric_only_alerts(tripled: Traffic) -> None:
    r = rollout(metrics=[{"name": "escalation_rate", "critical": False}])
    decisions = run(Engine([r]), summaries(tripled))
    assert [d.action for d in decisions] == ["alert"]
    assert "not critical" in decisions[0].reason


# --- steps and promotion --------------------------------------------------------------------------------
STEPS = [{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"setWeight": 50}, {"pause": {"duration": "30s"}}]
ON_TIME = {"promotion": {"evidence": False}}  # steps that pass on event time alone, as before promotion on evidence


def test_healthy_canary_steps_forward_then_is_promoted() -> None:
    stream = traffic(seed=7, seconds=120, escalation=(0.12, 0.12))
    decisions = run(Engine([rollout(steps=STEPS, **ON_TIME)]), summaries(stream))
    assert [d.action for d in decisions] == ["set_weight", "set_weight", "promote"]
    assert [d.weights for d in decisions] == [{"v1": 90.0, "v2": 10.0}, {"v1": 50.0, "v2": 50.0},
                                              {"v1": 0.0, "v2": 100.0}]
    first = epoch(decisions[0])
    assert first == T0 + 1  # the end of the first closed bucket
    assert epoch(decisions[1]) - first == 30.0 and epoch(decisions[2]) - first == 60.0
    assert decisions[0].time == iso(T0 + 1)
    assert all(d.version == "v2" and d.examples == [] for d in decisions)


def test_consecutive_weights_are_set_in_one_bucket() -> None:
    stream = traffic(seed=8, seconds=20, escalation=(0.12, 0.12))
    steps = [{"setWeight": 5}, {"setWeight": 25}, {"pause": {"duration": 10}}]
    decisions = run(Engine([rollout(steps=steps, **ON_TIME)]), summaries(stream))
    assert [(d.action, d.weights["v2"]) for d in decisions] == [("set_weight", 5.0), ("set_weight", 25.0),
                                                                 ("promote", 100.0)]
    assert decisions[0].time == decisions[1].time


def test_harmful_canary_is_rolled_back_before_promotion(tripled: Traffic) -> None:
    steps = [{"setWeight": 10}, {"pause": {"duration": "10m"}}]
    decisions = run(Engine([rollout(steps=steps)]), summaries(tripled))
    actions = [d.action for d in decisions]
    assert actions[0] == "set_weight" and actions[-1] == "rollback" and "promote" not in actions
    assert decisions[-1].weights == {"v1": 100.0, "v2": 0.0}


def test_configured_engine_ignores_other_agents() -> None:
    other = traffic(seed=9, seconds=60, agent="other", escalation=(0.1, 0.6))
    engine = Engine([rollout(steps=STEPS)])
    assert run(engine, summaries(other)) == []
    assert "other" not in engine.agents


def test_config_versions_win_over_event_tracks() -> None:
    # the events call v3 canary, but the rollout compares v1 with v2: v3 is not analysed
    stream = traffic(seed=10, seconds=120, escalation=(0.1, 0.5), versions=("v1", "v3"))
    assert run(Engine([rollout()]), summaries(stream)) == []
    assert run(Engine(), summaries(stream))[-1].action == "rollback"  # in track mode, v3 is the canary


# --- checkpoints ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_agents() -> list[Summary]:
    slow_harm = traffic(seed=11, seconds=240, agent="bot-a", escalation=(0.10, 0.18))
    stepping = traffic(seed=12, seconds=240, agent="bot-b", escalation=(0.12, 0.12))
    return summaries(slow_harm, stepping, sources=2)


def test_two_agent_scenario_decides_something(two_agents: list[Summary]) -> None:
    decisions = run(configured(), two_agents)
    assert {(d.agent, d.action) for d in decisions} >= {("bot-a", "rollback"), ("bot-b", "set_weight"),
                                                         ("bot-b", "promote")}


@pytest.mark.parametrize("cut", [0.1, 0.3, 0.45, 0.7])
def test_resuming_from_saved_state_decides_exactly_the_same(two_agents: list[Summary], cut: float) -> None:
    expected = run(configured(), two_agents)
    at = int(len(two_agents) * cut)
    first = configured()
    before = run(first, two_agents[:at], flush=False)
    assert any(st.window.open for st in first.agents.values())  # a checkpoint with open buckets
    saved = [json.loads(json.dumps(first.agent_state(agent))) for agent in first.agents]
    second = configured()
    for state in saved:
        second.load_agent(state)
    after = run(second, two_agents[at:])
    assert before + after == expected
    if cut < 0.5:  # bot-b sets its first weight at once and is promoted after 120 of the 240 seconds
        assert before and after


def test_resumed_engine_drops_a_replayed_summary(two_agents: list[Summary]) -> None:
    at = len(two_agents) // 2
    first = configured()
    run(first, two_agents[:at], flush=False)
    second = configured()
    for agent in first.agents:
        second.load_agent(json.loads(json.dumps(first.agent_state(agent))))
    replayed = two_agents[at - 1]
    assert second.apply(replayed) == []
    before = first.agents[replayed.agent].window.duplicate_summaries
    assert second.agents[replayed.agent].window.duplicate_summaries == before + 1


def test_track_mode_state_round_trip(tripled: Traffic) -> None:
    items = summaries(tripled)
    expected = run(Engine(), items)
    first = Engine()
    before = run(first, items[:8], flush=False)
    second = Engine()
    second.load_agent(json.loads(json.dumps(first.agent_state("bot"))))
    assert before + run(second, items[8:]) == expected


# --- replay ---------------------------------------------------------------------------------------------
def cloudevent(e: Event, n: int) -> dict[str, Any]:
    data = {k: v for k, v in msgspec.to_builtins(e.data).items() if v is not None}
    when = datetime.fromtimestamp(e.time, UTC).isoformat().replace("+00:00", "Z")
    return {"specversion": "1.0", "id": f"evt-{n}", "source": "/test", "type": "dev.vigil.interaction.v1",
            "time": when, "data": data}


def test_replay_counts_invalid_lines_and_still_decides(tmp_path: Path, tripled: Traffic) -> None:
    events = tripled.events
    invalid = [
        b"{not json",
        b'{"specversion": "1.0", "time": "2023-11-14T22:13:20Z", "data": {"version": "v1"}}',
        b'{"agent": "bot", "version": "v1", "channel": "fax", "time": "2023-11-14T22:13:20Z"}',
        b'{"agent": "bot", "version": "v1"}',  # no time: a file has no record timestamp
    ]
    lines: list[bytes] = []
    for i, e in enumerate(events):
        lines.append(json.dumps(cloudevent(e, i)).encode())
        if i % 1000 == 500:
            lines.append(invalid[(i // 1000) % len(invalid)])
            lines.append(b"   ")  # blank lines are skipped, not invalid
    late = Event(time=T0 + 3.5, data=events[0].data)
    lines.append(json.dumps(cloudevent(late, -1)).encode())  # 4 minutes behind: its bucket has closed
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    n_invalid = sum(1 for i in range(len(events)) if i % 1000 == 500)
    assert n_invalid >= 4

    stats = ReplayStats()
    decisions = list(replay(path, stats=stats))
    assert stats.invalid == n_invalid
    assert stats.events == len(events) + 1
    assert sum(stats.invalid_reasons.values()) == n_invalid
    assert any(k.startswith("malformed JSON") for k in stats.invalid_reasons)
    assert any("`agent`" in k for k in stats.invalid_reasons)
    assert stats.late == 1
    assert [d.action for d in decisions][-1] == "rollback"
    assert decisions[-1].evidence and "escalation_rate" in {e.metric for e in decisions[-1].evidence}


def test_replay_decides_as_the_engine_does(tmp_path: Path) -> None:
    stream = traffic(seed=13, seconds=90, escalation=(0.12, 0.12))
    path = tmp_path / "events.jsonl"
    with path.open("wb") as fh:
        for i, e in enumerate(stream.events):
            fh.write(json.dumps(cloudevent(e, i)).encode() + b"\n")
    r = rollout(steps=STEPS, **ON_TIME)
    with path.open("rb") as fh:
        replayed = list(replay(fh, [r]))
    assert [d.action for d in replayed] == ["set_weight", "set_weight", "promote"]
    assert replayed == run(Engine([r]), summaries(stream))


def test_replay_refuses_rollouts_with_different_buckets(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="bucketSeconds"):
        list(replay(path, [rollout("a"), rollout("b", bucketSeconds=2)]))


# --- segments -------------------------------------------------------------------------------------------
def test_resuming_with_segment_tests_decides_exactly_the_same() -> None:
    stream = traffic(seed=14, seconds=200, escalation=(0.10, 0.20), tenants=("acme", "globex", "initech"))
    # each ingest source keeps apart the first 2 tenants it sees, and the analysis the first 2 it sees
    items = summaries(stream, sources=2, tenants={"bot": 2})
    r = rollout(segments=["channel", "tenant"], maxSegments=2)
    whole = Engine([r])
    expected = run(whole, items)
    assert [d.action for d in expected] == ["rollback"]
    tests = whole.agents["bot"].analysis.tests  # type: ignore[union-attr]
    assert {"escalation_rate[tenant=other]", "escalation_rate[channel=other]"} <= set(tests)  # the cap is per dimension
    at = len(items) // 3
    first = Engine([r])
    before = run(first, items[:at], flush=False)
    st = first.agents["bot"]
    kept = {b.tenant for series in st.window.open.values() for b in series.values()}
    assert "other" in kept and kept <= {"acme", "globex", "initech", "other"}
    saved = json.loads(json.dumps(first.agent_state("bot")))
    second = Engine([r])
    second.load_agent(saved)
    assert before + run(second, items[at:]) == expected
    analysis = second.agents["bot"].analysis
    assert analysis is not None and analysis.segment_values == whole.agents["bot"].analysis.segment_values  # type: ignore[union-attr]
    assert [len(v) for v in analysis.segment_values.values()] == [2, 2]


def test_a_fault_in_one_tenant_is_rolled_back_with_segments_end_to_end(tmp_path: Path) -> None:
    """``vigil simulate`` with a fault in one tenant (globex, 22% of the traffic), replayed: pooled over tenants the
    harm is diluted; with ``segments: [tenant]`` the tenant's own test rolls the canary back."""
    path = tmp_path / "events.jsonl"
    config = SimConfig(rate=40, duration=300, seed=1, canary_weight=20,
                       faults=(Fault.parse("escalation:onset=60,magnitude=3,tenant=globex"),))
    write_jsonl(config, path)
    segmented = list(replay(path, [rollout("support-bot", segments=["tenant"])]))
    pooled = list(replay(path, [rollout("support-bot")]))
    assert [d.action for d in segmented] == ["rollback"]
    rb = segmented[0]
    metrics = [e.metric for e in rb.evidence]
    assert "escalation_rate[tenant=globex]" in metrics and all("[tenant=globex]" in m for m in metrics)
    assert rb.reason.split(" of canary ")[0] in metrics
    events = [json.loads(line)["data"] for line in path.read_bytes().splitlines()]
    harmed = {d["conversation_id"] for d in events
              if d["track"] == "canary" and d["tenant"] == "globex" and d["outcome"] != "resolved"}
    assert rb.examples and set(rb.examples) <= harmed
    # the pooled tests alone act later, if at all
    assert not pooled or epoch(pooled[-1]) > epoch(rb)


# --- fresh starts: a harm that begins late ----------------------------------------------------------------
def test_change_every_judges_a_late_harm_on_what_follows_it() -> None:
    """Twenty-five healthy minutes, then the canary escalates three times as often: with fresh starts every
    minute (the default) the rollback comes sooner than with the evidence counted from the start only."""
    healthy = traffic(seed=41, seconds=1500, escalation=(0.1, 0.1))
    harmful = traffic(seed=42, seconds=600, escalation=(0.1, 0.3), start=T0 + 1500)
    events = summaries(Traffic(polls=healthy.polls + harmful.polls))
    delays = {}
    for every in ("1m", 0):
        rollbacks = [d for d in run(Engine([rollout(changeEvery=every)]), events) if d.action == "rollback"]
        assert len(rollbacks) == 1 and epoch(rollbacks[0]) > T0 + 1500, every  # never during the healthy part
        delays[every] = epoch(rollbacks[0]) - (T0 + 1500)
    assert delays["1m"] < 0.6 * delays[0], delays
