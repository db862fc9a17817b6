"""The leader's actuator (rollback policy, retries until a decision lands) and the engine taking new
AgentRollout settings while it runs (pause, a new canary version)."""

from __future__ import annotations

import asyncio

from controller.actuators.kubernetes.errors import ConflictError, PermanentError, TemporaryError
from controller.config import Rollout
from controller.contracts.decisions import Decision, iso
from controller.engine.core import Engine
from controller.retry import RetryPolicy
from controller.runtime.actuator import Actuator, ActuatorSettings, target_of
from tests.support.actuator import Recorder, rollout
from tests.support.traffic import T0, run, summaries, traffic

RETRY = RetryPolicy(attempts=None, base_delay=1.0, max_delay=4.0, jitter=0.0)


def decision(action: str, t: float, version: str = "v2") -> Decision:
    return Decision(time=iso(t), agent="bot", action=action, version=version,  # type: ignore[arg-type]
                    weights={"v1": 100.0, version: 0.0}, reason="escalation_rate is worse", evidence=[], examples=[])


def actuator(apply: Recorder, r: Rollout, leader: list[bool] | None = None,
             sleeps: list[float] | None = None) -> Actuator:
    flag = leader if leader is not None else [True]

    async def sleep(s: float) -> None:
        if sleeps is not None:
            sleeps.append(s)

    async def wait() -> None:
        return None

    return Actuator(ActuatorSettings(bootstrap="unused:0", retry=RETRY), apply,
                    lambda agent: r if agent == r.agent else None, lambda: flag[0], wait, sleep=sleep)


def test_target_of_maps_every_field() -> None:
    t = target_of(rollout(traffic={"router": "istio", "name": "bot-vs", "route": "main"},
                          rollback={"scaleCanaryToZero": False}))
    assert (t.namespace, t.name, t.agent, t.router, t.route_name, t.istio_route) == (
        "shop", "bot-rollout", "bot", "istio", "bot-vs", "main")
    assert (t.stable_deployment, t.canary_deployment, t.stable_service, t.canary_service) == (
        "bot-v1", "bot-v2", "bot-v1", "bot-v2")
    assert t.scale_canary_to_zero is False


async def test_temporary_failures_are_retried_with_backoff_until_the_decision_lands() -> None:
    rec, sleeps = Recorder([TemporaryError("503"), ConflictError("409"), TemporaryError("timeout"),
                            TemporaryError("503")]), []
    act = actuator(rec, rollout(), sleeps=sleeps)
    assert await act.carry_out(decision("rollback", T0), asyncio.Event())
    assert rec.calls == 5 and [d.action for d in rec.applied] == ["rollback"]
    assert sleeps == [1.0, 2.0, 4.0, 4.0]  # doubling, capped at max_delay


async def test_a_bounded_policy_gives_a_decision_up_after_its_attempts() -> None:
    rec, sleeps, told = Recorder([TemporaryError("503")] * 5), [], []
    act = actuator(rec, rollout(), sleeps=sleeps)
    act.settings = ActuatorSettings(bootstrap="unused:0", retry=RetryPolicy(attempts=3, base_delay=1.0, jitter=0.0))
    act.notify = lambda d, applied, error: told.append((d.action, applied, error))
    assert await act.carry_out(decision("rollback", T0), asyncio.Event())  # failed for good: committed
    assert rec.calls == 3 and sleeps == [1.0, 2.0] and (act.applied, act.failed) == (0, 1)
    assert told == [("rollback", False, "gave up after 3 attempts: 503")]


async def test_a_permanent_failure_is_reported_and_the_stream_goes_on() -> None:
    rec = Recorder([PermanentError("403 forbidden")])
    act = actuator(rec, rollout())
    assert await act.carry_out(decision("set_weight", T0), asyncio.Event())
    assert rec.calls == 1 and act.failed == 1 and act.applied == 0


async def test_losing_leadership_leaves_the_decision_to_the_next_leader() -> None:
    leader = [True]
    rec = Recorder([TemporaryError("503")] * 3)
    act = actuator(rec, rollout(), leader=leader)

    async def sleep(_: float) -> None:
        leader[0] = False  # the Lease is lost while we wait to retry

    act.sleep = sleep
    assert not await act.carry_out(decision("rollback", T0), asyncio.Event())
    assert rec.applied == []


async def test_rollback_policy_cooldown_and_max_actions() -> None:
    rec = Recorder()
    act = actuator(rec, rollout(rollback={"cooldown": "10m", "maxActions": 2}))
    for t in (T0, T0 + 60, T0 + 700, T0 + 2000):
        assert await act.carry_out(decision("rollback", t), asyncio.Event())
    actions = [d.action for d in rec.applied]
    # the second comes within the cooldown; the fourth is past maxActions: both become alerts
    assert actions == ["rollback", "alert", "rollback", "alert"]
    assert "cooldown" in rec.applied[1].reason and "maxActions=2" in rec.applied[3].reason
    assert act.withheld == 2


def test_paused_rollout_holds_its_steps_but_still_rolls_back() -> None:
    steps = [{"setWeight": 10}, {"pause": {"duration": "10s"}}, {"setWeight": 50}, {"pause": {"duration": "10s"}}]
    healthy = run(Engine([rollout(steps=steps, paused=True)]), summaries(traffic(1, 120, share=0.3)))
    assert [d.action for d in healthy] == [], "paused before the first step: no step, no promotion"
    harmful = run(Engine([rollout(steps=steps, paused=True)]),
                  summaries(traffic(2, 240, share=0.3, escalation=(0.1, 0.3))))
    assert [d.action for d in harmful] == ["rollback"]


def test_engine_takes_new_settings_while_running() -> None:
    steps = [{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"setWeight": 50}, {"pause": {"duration": "1h"}}]
    on_time = {"analysis": {"promotion": {"evidence": False}}}  # the 30 s pause passes on time alone
    eng = Engine([rollout(steps=steps, paused=True, **on_time)])
    out: list[Decision] = []
    stream = summaries(traffic(3, 200, share=0.3))
    for i, p in enumerate(stream):
        if i == 60:
            eng.set_rollouts([rollout(steps=steps, **on_time)])  # resumed
        out.extend(eng.apply(p))
    acts = [(d.action, d.weights.get("v2")) for d in out]
    assert acts[:2] == [("set_weight", 10.0), ("set_weight", 50.0)], acts
    assert eng.agents["bot"].policy is not None and not eng.agents["bot"].policy.rollout.paused



async def test_a_new_leader_starts_from_the_rollbacks_recorded_on_the_resource() -> None:
    r = rollout(rollback={"cooldown": "10m", "maxActions": 2})
    asked: list[str] = []

    async def history(agent: str) -> tuple[int, float | None]:
        asked.append(agent)
        return 1, float(T0)  # the previous leader carried out one rollback, at T0

    rec = Recorder()
    act = actuator(rec, r)
    act.history = history
    # the same rollback again (its offset was not committed before the failover): carried out, not withheld
    assert await act.carry_out(decision("rollback", T0), asyncio.Event())
    # a new one 5 minutes later: within the cooldown that started at T0
    assert await act.carry_out(decision("rollback", T0 + 300), asyncio.Event())
    # after the cooldown, the second rollback of the resource; a third would pass maxActions=2
    assert await act.carry_out(decision("rollback", T0 + 1000), asyncio.Event())
    assert await act.carry_out(decision("rollback", T0 + 3000), asyncio.Event())
    assert [d.action for d in rec.applied] == ["rollback", "alert", "rollback", "alert"]
    assert asked == ["bot"], "the status is read once, when the leader first meets the agent"
    assert act.rollbacks["bot"] == (2, float(T0 + 1000))
