"""The rollback guards (``controller.policy.guards``): cooldown and maxActions, on a fake clock.

The guards read the decisions' event time, so the fake clock is the time the decisions carry. The live
actuator and ``vigil replay`` share them: the last tests check that both withhold the same rollbacks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import controller.replay as replay_module
from controller.cli import main
from controller.config import RollbackPolicy, Rollout, parse_rollout
from controller.contracts.decisions import Decision, iso
from controller.policy.guards import RollbackGuard, withheld_because
from controller.runtime.actuator import Actuator, ActuatorSettings

T0 = 1_800_000_000.0


class FakeClock:
    """Event time, moved by hand."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


def decision(action: str, t: float, agent: str = "bot") -> Decision:
    return Decision(time=iso(t), agent=agent, action=action, version="v2",  # type: ignore[arg-type]
                    weights={"v1": 100.0, "v2": 0.0}, reason="escalation_rate is worse", evidence=[], examples=[])


def guard(cooldown: float = 600.0, max_actions: int = 10) -> RollbackGuard:
    policy = RollbackPolicy(cooldown=cooldown, max_actions=max_actions)
    return RollbackGuard(lambda agent: policy if agent == "bot" else None)


def test_cooldown_withholds_a_second_rollback_within_its_window() -> None:
    g, clock = guard(cooldown=600.0), FakeClock()
    assert g.apply(decision("rollback", clock.t)).action == "rollback"
    second = g.apply(decision("rollback", clock.advance(599.0)))
    assert second.action == "alert"
    assert second.reason.startswith("rollback withheld: a rollback 599 s ago is within spec.rollback.cooldown=600 s")
    assert second.reason.endswith("escalation_rate is worse")
    # the window runs from the last rollback carried out, not from the withheld one
    assert g.apply(decision("rollback", clock.advance(1.0))).action == "rollback"
    assert g.withheld == 1 and g.rollbacks["bot"] == (2, T0 + 600.0)


def test_no_cooldown_withholds_nothing_by_time() -> None:
    g, clock = guard(cooldown=0.0), FakeClock()
    actions = [g.apply(decision("rollback", clock.advance(1.0))).action for _ in range(3)]
    assert actions == ["rollback"] * 3 and g.withheld == 0


def test_max_actions_caps_the_rollbacks_however_long_ago_the_last() -> None:
    g, clock = guard(cooldown=60.0, max_actions=2), FakeClock()
    actions = [g.apply(decision("rollback", clock.advance(3600.0))).action for _ in range(4)]
    assert actions == ["rollback", "rollback", "alert", "alert"]
    assert "maxActions=2" in g.check(decision("rollback", clock.advance(1e6))).reason
    assert g.rollbacks["bot"][0] == 2 and g.withheld == 3


def test_the_same_rollback_again_is_not_a_new_one() -> None:
    # a leader that failed over carries the same decision out again: not withheld, counted once
    g = guard(cooldown=600.0, max_actions=1)
    d = decision("rollback", T0)
    assert g.apply(d) == d and g.apply(d) == d
    assert g.rollbacks["bot"] == (1, T0) and g.withheld == 0


def test_remembered_rollbacks_count() -> None:
    g, clock = guard(cooldown=600.0, max_actions=3), FakeClock()
    g.remember("bot", 3, None)  # what an earlier leader carried out, from the AgentRollout's status
    assert g.knows("bot") and not g.knows("other")
    assert g.apply(decision("rollback", clock.t)).action == "alert"
    h = guard(cooldown=600.0)
    h.remember("bot", 1, T0)
    assert h.apply(decision("rollback", clock.advance(300.0))).action == "alert"


def test_other_decisions_and_unguarded_agents_pass_untouched() -> None:
    g, clock = guard(cooldown=600.0, max_actions=1), FakeClock()
    for action in ("set_weight", "pause", "promote", "alert"):
        d = decision(action, clock.advance(1.0))
        assert g.apply(d) is d
    assert not g.knows("bot")  # nothing counted
    for _ in range(3):
        d = decision("rollback", clock.advance(1.0), agent="no-rollout")
        assert g.apply(d) is d
    assert g.withheld == 0


def test_withheld_because_names_the_setting() -> None:
    p = RollbackPolicy(cooldown=300.0, max_actions=1)
    assert withheld_because(p, 0, None, T0) is None
    assert "cooldown=300" in (withheld_because(RollbackPolicy(cooldown=300.0), 1, T0, T0 + 10) or "")
    assert "maxActions=1" in (withheld_because(p, 1, T0, T0 + 1e6) or "")


# -- the live actuator and replay withhold the same rollbacks -----------------------------------------------
def _rollout(**rollback: Any) -> Rollout:
    return parse_rollout({"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout", "metadata": {"name": "bot"},
                          "spec": {"agent": "bot", "stable": {"version": "v1", "deployment": "bot-v1"},
                                   "canary": {"version": "v2", "deployment": "bot-v2"}, "rollback": rollback}})


TIMES = (0.0, 60.0, 700.0, 710.0, 2000.0, 5000.0)


class _Engine:
    """Stands in for the engine: the same rollbacks, one per summary, whatever the events."""

    def __init__(self, rollouts: list[Rollout]) -> None:
        self.rollouts = {r.agent: r for r in rollouts}
        self.agents: dict[str, Any] = {}
        self._times = iter(TIMES)

    def apply(self, _: Any) -> Iterator[Decision]:
        yield decision("rollback", T0 + next(self._times))

    def flush(self) -> Iterator[Decision]:
        for t in self._times:
            yield decision("rollback", T0 + t)


class _Aggregator:
    def __init__(self, **_: Any) -> None:
        self.count = 0

    def add(self, *_: Any) -> None:
        pass

    def drain(self) -> list[object]:
        return [object()]


async def _live(r: Rollout) -> list[Decision]:
    carried: list[Decision] = []

    async def apply(d: Decision) -> None:
        carried.append(d)

    async def wait_leader() -> None:
        pass

    act = Actuator(ActuatorSettings(bootstrap="unused:9092"), apply, lambda _: r, lambda: True, wait_leader)
    for t in TIMES:
        assert await act.carry_out(decision("rollback", T0 + t), asyncio.Event())
    return carried


@pytest.mark.parametrize("rollback", [{"cooldown": "10m", "maxActions": 3}, {"cooldown": 0, "maxActions": 1},
                                      {}])
def test_replay_withholds_what_the_live_actuator_withholds(rollback: dict[str, Any], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    r = _rollout(**rollback)
    live = asyncio.run(_live(r))
    monkeypatch.setattr(replay_module, "Engine", _Engine)
    monkeypatch.setattr(replay_module, "Aggregator", _Aggregator)
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    stats = replay_module.ReplayStats()
    replayed = list(replay_module.replay(path, [r], stats))
    assert replayed == live
    assert any(d.action == "alert" for d in live)
    assert stats.withheld == sum(d.action == "alert" for d in live)


def test_the_replay_summary_counts_the_withheld_rollbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(replay_module, "Engine", _Engine)
    monkeypatch.setattr(replay_module, "Aggregator", _Aggregator)
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "rollout.yaml").write_text(json.dumps({
        "apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout", "metadata": {"name": "bot"},
        "spec": {"agent": "bot", "stable": {"version": "v1"}, "canary": {"version": "v2"},
                 "rollback": {"maxActions": 2}}}))
    assert main(["replay", str(tmp_path / "empty.jsonl"), "--config", str(tmp_path / "rollout.yaml"),
                 "--output", str(tmp_path / "out.jsonl")]) == 0
    # six rollbacks, two carried out (maxActions), four withheld as alerts
    assert f"{len(TIMES)} decisions, {len(TIMES) - 2} rollbacks withheld by spec.rollback" in capsys.readouterr().err
