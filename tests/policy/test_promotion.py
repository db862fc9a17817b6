"""Promotion on evidence (``spec.analysis.promotion``): a step's pause passes only once every critical test has
had the canary data to catch a harm of the configured size; until then it holds, reported as a ``pause``
decision (insufficient data: neither a pass nor a failure), and the verdict for Argo Rollouts and Flagger says
the same."""

from __future__ import annotations

import json
from typing import Any

from controller.contracts.decisions import Decision, seconds
from controller.engine.core import Engine
from controller.engine.verdict import verdict_of
from tests.support.traffic import T0, rollout, run, summaries, traffic

STEPS = [{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"setWeight": 50}, {"pause": {"duration": "30s"}}]


def decide(seed: int = 21, seconds_: int = 1200, steps: list[dict[str, Any]] | None = None, **analysis: Any
           ) -> tuple[Engine, list[Decision]]:
    engine = Engine([rollout(steps=STEPS if steps is None else steps, **analysis)])
    return engine, run(engine, summaries(traffic(seed=seed, seconds=seconds_, rate=20.0,
                                                 escalation=(0.12, 0.12))))


def promoted_at(decisions: list[Decision]) -> float | None:
    return next((seconds(d.time) - T0 for d in decisions if d.action == "promote"), None)


def test_a_step_holds_on_insufficient_data_then_passes_once_the_data_is_there() -> None:
    engine, decisions = decide()
    actions = [d.action for d in decisions]
    assert actions[0] == "set_weight" and actions[1] == "pause" and actions[-1] == "promote"
    held = [d for d in decisions if d.action == "pause"]
    assert all("held: insufficient data to catch a harm of odds ratio 2" in d.reason for d in held)
    assert "step 2/4 held" in held[0].reason and "escalation_rate" in held[0].reason
    # each hold says what it waits for, and is reported again only when that changes
    assert len({d.reason for d in held}) == len(held)
    # on time alone the same traffic is promoted 60 s after the first step; on evidence, later
    at = promoted_at(decisions)
    assert at is not None and at > 61
    assert "each critical test with the data to catch a harm of odds ratio 2" in decisions[-1].reason
    st = engine.agents["bot"]
    assert st.analysis is not None and st.analysis.promotion_gaps() == []


def test_evidence_false_passes_steps_on_time_alone() -> None:
    _, decisions = decide(promotion={"evidence": False})
    assert [d.action for d in decisions] == ["set_weight", "set_weight", "promote"]
    assert promoted_at(decisions) == 61


def test_the_harm_size_and_the_power_set_how_much_data_a_step_waits_for() -> None:
    base = promoted_at(decide()[1])
    larger = promoted_at(decide(promotion={"oddsRatio": 4})[1])
    surer = promoted_at(decide(promotion={"power": 0.99})[1])
    # error_rate and guardrail_block_rate never happen here: what they wait for is set by `increase` alone
    finer = promoted_at(decide(promotion={"oddsRatio": 4, "increase": 0.002})[1])
    assert base is not None and larger is not None
    assert larger < base and (surer is None or surer > base)
    assert finer is None or finer > larger


def test_a_configured_canary_that_gets_no_traffic_is_never_promoted() -> None:
    engine = Engine([rollout(steps=STEPS)])
    decisions = run(engine, summaries(traffic(seed=22, seconds=300, share=0.0)))
    assert [d.action for d in decisions] == ["set_weight", "pause"]
    assert "no canary observations" in decisions[1].reason
    doc = verdict_of(engine.agents["bot"], None, "bot")
    assert doc.verdict == "inconclusive" and not doc.healthy and not doc.rollback


def test_a_standing_alarm_with_too_few_samples_to_act_holds_the_step() -> None:
    engine = Engine([rollout(steps=STEPS, minSamples=10 ** 6, promotion={"evidence": False})])
    decisions = run(engine, summaries(traffic(seed=23, seconds=300, escalation=(0.1, 0.4))))
    actions = [d.action for d in decisions]
    assert "promote" not in actions and "rollback" not in actions and "alert" in actions
    held = [d for d in decisions if d.action == "pause"]
    assert held and "in alarm with too few samples to act" in held[0].reason and "escalation_rate" in held[0].reason


def test_the_verdict_is_inconclusive_while_a_step_holds_and_healthy_once_it_may_pass() -> None:
    engine = Engine([rollout(steps=STEPS)])
    verdicts: list[tuple[str, str, bool]] = []
    for p in summaries(traffic(seed=21, seconds=1200, rate=20.0, escalation=(0.12, 0.12))):
        for d in engine.apply(p):
            doc = verdict_of(engine.agents["bot"], None, "bot")
            verdicts.append((d.action, doc.verdict, doc.enough_samples))
    held = [v for v in verdicts if v[0] == "pause"]
    assert held and all(v[1:] == ("inconclusive", False) for v in held)
    # the bucket the step passes in, the verdict says healthy: Argo Rollouts and Flagger would pass it too
    assert ("set_weight", "healthy", True) in verdicts[2:] and verdicts[-1][0] == "promote"


def test_a_hold_survives_a_checkpoint() -> None:
    items = summaries(traffic(seed=21, seconds=1200, rate=20.0, escalation=(0.12, 0.12)))
    whole = run(Engine([rollout(steps=STEPS)]), items)
    first = Engine([rollout(steps=STEPS)])
    cut = next(i for i, p in enumerate(items) if p.buckets and p.buckets[0].start >= T0 + 100)
    before = run(first, items[:cut], flush=False)
    assert "pause" in [d.action for d in before]
    second = Engine([rollout(steps=STEPS)])
    second.load_agent(json.loads(json.dumps(first.agent_state("bot"))))
    assert before + run(second, items[cut:]) == whole
