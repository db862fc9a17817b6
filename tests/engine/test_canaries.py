"""Several canary versions of one agent at once, in track mode (issue 9, cause 5): each is judged against the
stable version on its own (``controller.engine.core.AgentState``), a stray version starts nothing, an idle one
is dropped, and the number judged at once is capped.

The main scenario is ``vigil simulate`` with ``extra_canary_versions=("v3",)``: v2 and v3 share the canary
traffic, and from the first minute v3 escalates three times as often (``Fault.version``).
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

from controller.contracts.decisions import Decision, seconds
from controller.contracts.events import Event, Interaction
from controller.contracts.verdict import decode, encode
from controller.engine.core import ADMIT_BUCKETS, CANARY_IDLE, MAX_CANARIES, MAX_CANDIDATES, Engine
from controller.engine.verdict import published
from controller.ingest.buckets import Summary
from controller.replay import replay
from controller.runtime.changelog import decode_state, encode_state
from controller.tools.simulate import Fault, SimConfig, write_jsonl
from tests.support.simulated import sim_events, sim_summaries
from tests.support.traffic import CHANNELS, T0, Traffic, rollout, run, summaries

AGENT = "support-bot"
CONFIG = SimConfig(rate=60, duration=300, canary_weight=40, seed=1, extra_canary_versions=("v3",),
                   faults=(Fault("escalation", onset=60, magnitude=3.0, version="v3"),))
#: a track-mode rollout with steps: no spec.stable / spec.canary, so the versions come from the events' track
#: (its pause passes on time alone: five minutes of traffic are too few to catch a doubling of the rare metrics)
STEPPED = msgspec.structs.replace(rollout(AGENT, steps=[{"setWeight": 20}, {"pause": {"duration": "3m"}}],
                                          promotion={"evidence": False}),
                                  stable=None, canary=None)


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return sim_events(CONFIG)


@pytest.fixture(scope="module")
def items(events: list[Event]) -> list[Summary]:
    return sim_summaries(events)


@pytest.fixture(scope="module")
def watched(items: list[Summary]) -> tuple[Engine, list[Decision]]:
    # healthy on five minutes of v2: its verdict may not wait for the evidence a promotion needs
    engine = Engine(default=msgspec.structs.replace(STEPPED, steps=()))
    return engine, run(engine, items)


def test_the_harmful_canary_is_rolled_back_and_the_healthy_one_judged_on(
        watched: tuple[Engine, list[Decision]]) -> None:
    engine, decisions = watched
    assert [(d.action, d.version) for d in decisions] == [("rollback", "v3")]
    rb = decisions[0]
    assert rb.weights == {"v1": 100.0, "v3": 0.0} and "canary v3" in rb.reason and "stable v1" in rb.reason
    assert seconds(rb.time) > CONFIG.start + 60  # after the onset, never before
    st = engine.agents[AGENT]
    assert list(st.runs) == ["v2", "v3"] and st.stable == "v1"
    v2, v3 = st.runs["v2"], st.runs["v3"]
    assert v3.policy.phase == "rolled_back" and v2.policy.phase == "progressing"
    # v2 was judged at every bucket but the first ADMIT_BUCKETS - 1, before and after v3's rollback
    assert v2.analysis.buckets_seen >= CONFIG.duration - ADMIT_BUCKETS - 2
    assert all(not t.alarm for t in v2.analysis.tests.values())
    assert v3.analysis.buckets_seen < v2.analysis.buckets_seen  # a rolled-back canary is judged no more
    assert {v2.analysis.canary, v3.analysis.canary} == {"v2", "v3"} and v2.analysis.stable == v3.analysis.stable


def test_with_steps_the_healthy_canary_is_promoted_after_the_harmful_one_is_rolled_back(
        items: list[Summary]) -> None:
    decisions = run(Engine([STEPPED]), items)
    assert [(d.action, d.version) for d in decisions] == [
        ("set_weight", "v2"), ("set_weight", "v3"), ("rollback", "v3"), ("promote", "v2")]
    assert decisions[0].weights == {"v1": 80.0, "v2": 20.0} and decisions[1].weights == {"v1": 80.0, "v3": 20.0}
    assert seconds(decisions[2].time) < seconds(decisions[3].time) == seconds(decisions[0].time) + 180
    assert decisions[3].weights == {"v1": 0.0, "v2": 100.0}


def test_the_verdict_answers_for_the_worst_canary_and_lists_each(watched: tuple[Engine, list[Decision]]) -> None:
    engine, _ = watched
    doc = published(engine.agents[AGENT])
    assert doc.rollback is True and doc.healthy is False and doc.verdict == "unhealthy"
    assert doc.canary == "v3" and doc.stable == "v1" and doc.phase == "rolled_back" and doc.canary_weight == 0.0
    assert "escalation_rate" in doc.alarms
    assert isinstance(doc.canaries, list) and [c.canary for c in doc.canaries] == ["v2", "v3"]
    v2, v3 = doc.canaries
    assert v2.verdict == "healthy" and v2.healthy and not v2.rollback and v2.phase == "progressing"
    assert v3.verdict == "unhealthy" and v3.rollback and v3.alarms == doc.alarms and v3.evidence == doc.evidence
    raw = encode(doc)
    assert raw.index(b'"canaryWeight"') < raw.index(b'"canaries"') and decode(raw) == doc
    body = json.loads(raw)
    assert set(body["canaries"][0]) == {"canary", "verdict", "healthy", "rollback", "phase", "canarySamples",
                                         "enoughSamples", "alarms", "evidence", "canaryWeight"}


def test_with_one_canary_the_verdict_has_no_canaries_field() -> None:
    config = SimConfig(rate=60, duration=60, canary_weight=40, seed=2)
    engine = Engine()
    run(engine, sim_summaries(sim_events(config)))
    doc = published(engine.agents[AGENT])
    assert doc.canary == "v2" and doc.canaries is msgspec.UNSET and b"canaries" not in encode(doc)


# --- hysteresis: a stray version starts nothing ---------------------------------------------------------------
def _event(t: float, version: str, n: int = 0, agent: str = AGENT) -> Event:
    return Event(time=t, data=Interaction(agent=agent, version=version, track="canary", channel="webchat",
                                          conversation_id=f"{version}-{n}-{t}", outcome="resolved",
                                          latency_ms=700.0, output_tokens=120.0))


def test_a_stray_event_of_another_version_starts_no_analysis(
        events: list[Event], watched: tuple[Engine, list[Decision]]) -> None:
    at = next(i for i, e in enumerate(events) if e.time >= CONFIG.start + 100)
    stray = [*events[:at], _event(events[at].time, "v4"), *events[at:]]
    engine = Engine()
    decisions = run(engine, sim_summaries(stray))
    assert decisions == watched[1]  # the other canaries are judged exactly as without it
    st = engine.agents[AGENT]
    assert list(st.runs) == ["v2", "v3"]
    assert st.unjudged_events == watched[0].agents[AGENT].unjudged_events + 1
    assert st.candidates == {"v4": [1, pytest.approx(int(events[at].time)), 0]}
    # the same version in ADMIT_BUCKETS buckets is a canary
    again = [*stray[:at], *(_event(events[at].time + k, "v4", n=k) for k in range(1, ADMIT_BUCKETS)), *stray[at:]]
    again.sort(key=lambda e: e.time)
    engine = Engine()
    run(engine, sim_summaries(again))
    assert list(engine.agents[AGENT].runs) == ["v2", "v3", "v4"]


# --- idle canaries and a new stable -------------------------------------------------------------------------
def stream(seconds: int, versions: dict[str, tuple[str, float, float, int, int]], seed: int = 0,
           start: int = T0) -> Traffic:
    """Per second, Poisson(rate) events of each version ``{version: (track, rate, p_escalation, from, to)}``
    while ``from <= second < to``."""
    rng = np.random.default_rng(seed)
    out = Traffic()
    serial = 0
    for s in range(seconds):
        poll = []
        for version, (track, rate, p, first, stop) in versions.items():
            if not first <= s < stop:
                continue
            for _ in range(int(rng.poisson(rate))):
                serial += 1
                u = float(rng.random())
                outcome = "escalated" if u < p else ("abandoned" if u < p + 0.05 else "resolved")
                poll.append(Event(time=start + s + float(rng.random()), data=Interaction(
                    agent="bot", version=version, track=track, channel=CHANNELS[serial % 3],
                    conversation_id=f"{version}-{serial}", outcome=outcome,  # type: ignore[arg-type]
                    latency_ms=float(rng.lognormal(6.5, 0.4)), output_tokens=float(rng.poisson(120)))))
        poll.sort(key=lambda e: e.time)
        out.polls.append(poll)
    return out


def test_a_canary_that_stops_sending_is_dropped_after_the_idle_time_and_may_come_back() -> None:
    end = int(CANARY_IDLE) + 200
    gone = stream(end, {"v1": ("stable", 20, 0.1, 0, end), "v2": ("canary", 3, 0.1, 0, end),
                        "v3": ("canary", 3, 0.1, 0, 60)})
    back = stream(10, {"v1": ("stable", 20, 0.1, 0, 10), "v3": ("canary", 3, 0.1, 0, 10)}, seed=1, start=T0 + end)
    items = summaries(Traffic(polls=gone.polls + back.polls))
    engine = Engine()
    seen: list[list[str]] = []
    for p in items:
        engine.apply(p)
        seen.append(sorted(engine.agents["bot"].runs))
    engine.flush()
    st = engine.agents["bot"]
    # v3 was judged, then dropped once silent for CANARY_IDLE, while v2 was judged on, never restarted
    at = seen.index(["v2"], seen.index(["v2", "v3"]))
    assert 60 + CANARY_IDLE - 2 <= at <= 60 + CANARY_IDLE + 8
    assert st.runs["v2"].analysis.buckets_seen >= end - ADMIT_BUCKETS
    # v3 came back: a new analysis, after ADMIT_BUCKETS buckets
    assert sorted(st.runs) == ["v2", "v3"] and st.runs["v3"].analysis.buckets_seen <= 10 - ADMIT_BUCKETS + 1


def test_a_new_stable_restarts_every_canary_analysis() -> None:
    traffic = stream(120, {"v1": ("stable", 20, 0.1, 0, 60), "v1.1": ("stable", 20, 0.1, 60, 120),
                           "v2": ("canary", 3, 0.1, 0, 120), "v3": ("canary", 3, 0.1, 0, 120)})
    engine = Engine()
    stables = []
    for p in summaries(traffic):
        engine.apply(p)
        stables.append(engine.agents["bot"].stable)
    engine.flush()
    st = engine.agents["bot"]
    assert stables[30] == "v1" and st.stable == "v1.1"
    assert sorted(st.runs) == ["v2", "v3"]
    for run_ in st.runs.values():
        assert run_.analysis.stable == run_.policy.stable == "v1.1" and run_.analysis.buckets_seen <= 62


# --- the cap --------------------------------------------------------------------------------------------------
def test_thousands_of_one_off_versions_start_nothing_and_keep_the_state_small() -> None:
    """A producer that sends a new version string with every canary event."""
    base = stream(100, {"v1": ("stable", 30, 0.1, 0, 100), "v2": ("canary", 5, 0.3, 0, 100)})
    noisy = Traffic(polls=[list(p) for p in base.polls])
    n = 0
    for s, poll in enumerate(noisy.polls):
        for _ in range(50):
            n += 1
            poll.append(_event(T0 + s + 0.5, f"build-{n}", agent="bot"))
        poll.sort(key=lambda e: e.time)
    assert n == 5000
    plain = run(Engine(), summaries(base))
    engine = Engine()
    assert run(engine, summaries(noisy)) == plain and [d.action for d in plain] == ["rollback"]
    st = engine.agents["bot"]
    assert list(st.runs) == ["v2"] and len(st.candidates) <= MAX_CANDIDATES
    assert st.unjudged_events >= n and st.refused == 0
    # what the noise adds to the state is the bounded table of candidates
    quiet = Engine()
    run(quiet, summaries(base))
    assert len(json.dumps(engine.agent_state("bot"))) < len(json.dumps(quiet.agent_state("bot"))) + 40 * MAX_CANDIDATES


def test_beyond_the_cap_further_versions_are_refused_with_one_alert_and_counted() -> None:
    versions = {f"p{i:02d}": ("canary", 2.0, 0.1, 0, 60) for i in range(MAX_CANARIES + 4)}
    traffic = stream(60, {"v1": ("stable", 30, 0.1, 0, 60), **versions, "bad": ("canary", 5, 0.6, 20, 60)})
    engine = Engine()
    decisions = run(engine, summaries(traffic))
    st = engine.agents["bot"]
    assert len(st.runs) == MAX_CANARIES and set(st.runs) < set(versions)
    alerts = [d for d in decisions if d.action == "alert" and not d.evidence]
    assert len(alerts) == 1 and f"at most {MAX_CANARIES} at once" in alerts[0].reason
    assert alerts[0].version in set(versions) - set(st.runs) and alerts[0].weights[alerts[0].version] == 0.0
    assert st.refused == 5  # four p.. versions and "bad", never judged
    assert st.unjudged_events > 0 and not any(d.version == "bad" and d.action == "rollback" for d in decisions)


def test_a_finished_canary_gives_its_slot_to_a_refused_one() -> None:
    versions = {f"p{i:02d}": ("canary", 3.0, 0.1, 0, 200) for i in range(MAX_CANARIES)}
    versions["p00"] = ("canary", 8.0, 0.5, 0, 200)  # harmful: rolled back, its slot freed
    traffic = stream(200, {"v1": ("stable", 40, 0.1, 0, 200), **versions, "q": ("canary", 3.0, 0.1, 0, 200)})
    engine = Engine()
    decisions = run(engine, summaries(traffic))
    assert ("rollback", "p00") in [(d.action, d.version) for d in decisions]
    st = engine.agents["bot"]
    assert "q" in st.runs and len(st.runs) == MAX_CANARIES and st.refused >= 1


# --- replay, live and checkpoints decide alike ------------------------------------------------------------
def test_replay_decides_as_the_engine_does_with_several_canaries(
        tmp_path: Path, watched: tuple[Engine, list[Decision]]) -> None:
    path = tmp_path / "events.jsonl"
    write_jsonl(CONFIG, path)
    assert list(replay(path)) == watched[1]
    assert list(replay(path, [STEPPED])) == run(Engine([STEPPED]), sim_summaries(sim_events(CONFIG)))


def _candidates_only(items: list[Summary]) -> int:
    """How many summaries leave the canaries counted towards admission, none admitted yet."""
    engine = Engine([STEPPED])
    for at, p in enumerate(items, 1):
        engine.apply(p)
        if engine.agents[AGENT].candidates:
            assert not engine.agents[AGENT].runs
            return at
    raise AssertionError("no candidates")


@pytest.mark.parametrize("at", [0, 30, 90, 180])
def test_resuming_with_several_canaries_decides_exactly_the_same(items: list[Summary], at: int) -> None:
    """Cut before the canaries are admitted, while both are judged, after v3's rollback, after v2's promotion."""
    expected = run(Engine([STEPPED]), items)
    at = at or _candidates_only(items)
    first = Engine([STEPPED])
    before = run(first, items[:at], flush=False)
    # through the checkpoint's schema, as the changelog topic carries it
    saved = decode_state(encode_state(first.agent_state(AGENT)))
    if at < 30:
        assert saved["canaries"] == [] and saved["track"]["candidates"]
    else:
        assert len(saved["canaries"]) == 2
    second = Engine([STEPPED])
    second.load_agent(json.loads(json.dumps(saved)))
    assert before + run(second, items[at:]) == expected
    assert second.agent_state(AGENT) == json.loads(json.dumps(_whole(items)))


def _whole(items: list[Summary]) -> dict[str, object]:
    engine = Engine([STEPPED])
    run(engine, items)
    return engine.agent_state(AGENT)


def test_a_configured_rollout_judges_its_one_canary_only(items: list[Summary]) -> None:
    engine = Engine([rollout(AGENT)])  # v1 against v2; v3 is not this rollout's
    assert run(engine, items) == []
    st = engine.agents[AGENT]
    assert list(st.runs) == ["v2"] and st.candidates == {} and st.unjudged_events == 0
