"""Tests of the synthetic traffic generator (``controller.tools.simulate``): contract, determinism, faults, CLI.

Statistical assertions use fixed seeds, so they are deterministic; their tolerances are still set at
about 4-5 standard errors so that a change of seed or of the generator's internals does not make them
flaky, while a broken fault (or a fault leaking into the wrong version) misses them by far more.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from controller.contracts.events import decode_line, decode_record
from controller.tools.simulate import FAULT_KINDS, TENANTS, Fault, SimConfig, generate, register, write_jsonl

CHANNELS = {"voice", "sms", "whatsapp", "rcs", "webchat", "email"}


class Frame:
    """Columns of a list of generated events, for vectorised statistics."""

    def __init__(self, config: SimConfig, events: list[dict[str, Any]]) -> None:
        data = [e["data"] for e in events]
        stamps = np.array([e["time"].removesuffix("Z") for e in events], dtype="datetime64[ms]")
        self.rel = stamps.astype(np.int64) / 1000.0 - config.start
        self.canary = np.array([d["track"] == "canary" for d in data])
        self.tenant = np.array([d["tenant"] for d in data])
        self.outcome = np.array([d["outcome"] for d in data])
        self.latency = np.array([d["latency_ms"] for d in data])
        self.output_tokens = np.array([d["output_tokens"] for d in data])
        self.blocked = np.array([any(g["action"] == "block" for g in d["guardrails"]) for d in data])
        self.length = np.array(["length" in d["finish_reasons"] for d in data])
        self.csat = np.array([d["feedback"]["csat"] if "feedback" in d else 0 for d in data])


def frame(config: SimConfig, weight_fn: Callable[[], float] | None = None) -> Frame:
    return Frame(config, list(generate(config, weight_fn)))


def rate(flags: np.ndarray) -> tuple[float, int]:
    return float(flags.mean()), int(flags.size)


def z_two(a: np.ndarray, b: np.ndarray) -> float:
    """Two-proportion z statistic of boolean samples ``a`` and ``b``."""
    pa, na = rate(a)
    pb, nb = rate(b)
    pooled = (a.sum() + b.sum()) / (na + nb)
    se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    return (pa - pb) / se


def close(p_hat: float, p: float, n: int, k: float = 4.5) -> bool:
    """``p_hat`` is within ``k`` binomial standard errors of ``p``."""
    return abs(p_hat - p) <= k * math.sqrt(p * (1 - p) / n)


def fingerprint(events: Iterable[dict[str, Any]]) -> bytes:
    return b"\n".join(msgspec.json.encode(e) for e in events)


# --- contract ----------------------------------------------------------------------------------------------
def test_every_event_decodes_and_is_well_formed() -> None:
    config = SimConfig(rate=100, duration=60, seed=7, faults=(Fault("error"), Fault("guardrail")))
    events = list(generate(config))
    assert 4000 < len(events) < 8000
    ids = set()
    previous = -math.inf
    for event in events:
        decoded = decode_record(msgspec.json.encode(event))
        assert event["specversion"] == "1.0" and event["type"] == "dev.vigil.interaction.v1"
        assert event["time"].endswith("Z") and len(event["time"]) == len("2026-11-26T10:00:00.123Z")
        assert config.start <= decoded.time < config.start + config.duration
        assert decoded.time >= previous, "events must come in non-decreasing event time"
        previous = decoded.time
        ids.add(decoded.id)
        data = decoded.data
        assert data.agent == "support-bot"
        assert (data.track, data.version) in {("stable", "v1"), ("canary", "v2")}
        assert data.channel in CHANNELS
        assert data.conversation_id is not None and data.conversation_id.startswith("c-")
        assert data.turn is not None and data.turn >= 1
        assert data.outcome in {"resolved", "escalated", "abandoned", "error"}
        assert (data.error_type is not None) == (data.outcome == "error")
        assert data.guardrails and data.guardrails[0].policy == "pii"
        assert data.tool_calls is not None and len(data.tool_calls) <= 3
        assert all(0 <= e.score <= 1 for e in data.evaluations or [])
        assert data.latency_ms is not None and data.cost_usd is not None
        raw = event["data"]
        assert not {"text", "message", "content", "prompt", "response"} & raw.keys(), "no message text"
    assert len(ids) == len(events), "event ids must be unique"


def test_conversations_are_consistent_sequences_of_turns() -> None:
    events = list(generate(SimConfig(rate=50, duration=300, seed=2)))
    conversations: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        conversations.setdefault(event["data"]["conversation_id"], []).append(event["data"])
    assert len(conversations) < len(events) * 0.75, "most conversations should have several turns"
    for turns in conversations.values():
        numbers = [t["turn"] for t in turns]
        # A run starts mid-stream (warm-up), so the first turn seen may be later than 1, but never repeats.
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert len({(t["channel"], t["tenant"], t["intent"]) for t in turns}) == 1


def test_healthy_baseline_is_realistic() -> None:
    config = SimConfig(rate=200, duration=150, seed=11)
    events = list(generate(config))
    f = Frame(config, events)
    n = len(events)
    assert abs(n / (config.rate * config.duration) - 1) < 0.05, "the configured rate, from the first second"
    assert abs((f.rel < 10).sum() / (config.rate * 10) - 1) < 0.15, "no ramp-up: the run starts warm"
    assert 0.10 < (f.outcome == "escalated").mean() < 0.14
    assert 0.04 < (f.outcome == "abandoned").mean() < 0.06
    assert 0.01 < (f.outcome == "error").mean() < 0.02
    assert 0.015 < f.blocked.mean() < 0.025
    assert 0.015 < f.length.mean() < 0.03
    assert 700 < np.median(f.latency) < 1100
    assert 140 < np.median(f.output_tokens) < 220
    rated = f.csat[f.csat > 0]
    assert 0.25 < rated.size / n < 0.35
    assert (rated >= 4).mean() > 0.7
    voice = np.array([e["data"]["channel"] == "voice" for e in events])
    assert (f.outcome[voice] == "escalated").mean() > (f.outcome[~voice] == "escalated").mean() + 0.03


# --- determinism, order, routing ----------------------------------------------------------------------------
def test_deterministic_per_seed_and_different_across_seeds() -> None:
    config = SimConfig(rate=80, duration=30, seed=5, faults=(Fault("latency", onset=10),))
    first = fingerprint(generate(config))
    assert first == fingerprint(generate(config))
    assert first != fingerprint(generate(dataclasses.replace(config, seed=6)))


def test_constant_weight_fn_matches_configured_weight() -> None:
    """Output does not depend on how it is chunked (a weight_fn makes chunks of a fraction of a second)."""
    config = SimConfig(rate=120, duration=40, seed=9, canary_weight=25)
    assert fingerprint(generate(config)) == fingerprint(generate(config, lambda: 25.0))


@pytest.mark.parametrize("weight", [10.0, 50.0, 90.0])
def test_canary_share_follows_canary_weight(weight: float) -> None:
    f = frame(SimConfig(rate=200, duration=60, seed=1, canary_weight=weight))
    share, n = rate(f.canary)
    assert n > 10_000
    assert close(share, weight / 100, n)


@pytest.mark.parametrize("weight", [0.0, 100.0])
def test_weight_fn_extremes_route_all_traffic(weight: float) -> None:
    f = frame(SimConfig(rate=100, duration=30, canary_weight=50), lambda: weight)
    assert f.canary.size > 2000
    assert f.canary.all() if weight == 100 else not f.canary.any()


def test_weight_fn_switch_takes_effect_promptly() -> None:
    """A rollback (weight 50 -> 0) stops canary traffic within a second of event time."""
    calls = 0

    def weight() -> float:
        nonlocal calls
        calls += 1
        return 50.0 if calls <= 50 else 0.0  # about 10 s of event time at 0.2 s per read

    f = frame(SimConfig(rate=100, duration=30, seed=4), weight)
    switch = 10.0
    assert close(f.canary[f.rel < switch - 1].mean(), 0.5, int((f.rel < switch - 1).sum()))
    assert not f.canary[f.rel > switch + 1].any()


def test_rate_follows_the_wave() -> None:
    config = SimConfig(rate=60, duration=600, seed=3, wave_period=600, wave_amplitude=0.8)
    f = frame(config)
    peak = ((f.rel >= 100) & (f.rel < 200)).sum()  # the wave of conversation starts peaks at 150 s
    trough = ((f.rel >= 400) & (f.rel < 500)).sum()  # and bottoms out at 450 s
    assert peak > 2.5 * trough
    assert abs(f.rel.size / (config.rate * config.duration) - 1) < 0.05, "rate is the mean over a period"


# --- faults ------------------------------------------------------------------------------------------------
def test_healthy_versions_have_indistinguishable_escalation() -> None:
    f = frame(SimConfig(rate=200, duration=120, seed=21, canary_weight=50))
    escalated = f.outcome == "escalated"
    assert abs(z_two(escalated[f.canary], escalated[~f.canary])) < 3.5


def test_escalation_fault_hits_canary_after_onset_only() -> None:
    onset = 60.0
    f = frame(SimConfig(rate=200, duration=120, seed=22, canary_weight=50,
                        faults=(Fault("escalation", onset=onset),)))
    esc = f.outcome == "escalated"
    before, after = f.rel < onset, f.rel >= onset
    assert abs(z_two(esc[before & f.canary], esc[before & ~f.canary])) < 3.5
    assert abs(z_two(esc[after & ~f.canary], esc[before & ~f.canary])) < 3.5, "the stable is unaffected"
    p, n = rate(esc[after & f.canary])
    assert close(p, 0.36, n), p  # 12% x 3
    assert z_two(esc[after & f.canary], esc[after & ~f.canary]) > 20


def test_tenant_fault_hits_that_tenant_only() -> None:
    f = frame(SimConfig(rate=300, duration=90, seed=27, canary_weight=50,
                        faults=(Fault.parse("escalation:onset=30,tenant=globex"),)))
    assert set(f.tenant) == set(TENANTS)
    esc, after, globex = f.outcome == "escalated", f.rel >= 30, f.tenant == "globex"
    assert z_two(esc[after & f.canary & globex], esc[after & ~f.canary & globex]) > 10
    assert abs(z_two(esc[after & f.canary & ~globex], esc[after & ~f.canary & ~globex])) < 3.5
    assert abs(z_two(esc[~after & f.canary & globex], esc[~after & ~f.canary & globex])) < 3.5
    share, n = rate(globex)
    assert close(share, 0.22, n)  # the tenant mix of the generator: globex is the second tenant


def test_fault_on_stable_and_fault_duration() -> None:
    f = frame(SimConfig(rate=200, duration=90, seed=23, canary_weight=50,
                        faults=(Fault("error", onset=30, duration=30, target="stable", magnitude=6),)))
    err = f.outcome == "error"
    during = (f.rel >= 30) & (f.rel < 60)
    assert err[during & ~f.canary].mean() > 0.06
    assert err[during & f.canary].mean() < 0.03
    assert err[(f.rel >= 60) & ~f.canary].mean() < 0.03, "the fault ends after its duration"


def test_incident_hits_both_versions() -> None:
    f = frame(SimConfig(rate=200, duration=90, seed=24, canary_weight=50,
                        faults=(Fault.parse("incident:onset=30,duration=30"),)))
    during = (f.rel >= 30) & (f.rel < 60)
    calm = ~during
    ok = f.outcome != "error"
    for track in (f.canary, ~f.canary):
        slow = np.median(f.latency[during & track & ok]) / np.median(f.latency[calm & track & ok])
        assert 2.5 < slow < 3.5
        errors = f.outcome[track] == "error"
        assert errors[during[track]].mean() > 2.2 * errors[calm[track]].mean()
    # Same degradation on both sides: nothing for a canary analysis to blame on the canary.
    err = f.outcome == "error"
    assert abs(z_two(err[during & f.canary], err[during & ~f.canary])) < 3.5


def test_ramp_grows_gradually() -> None:
    f = frame(SimConfig(rate=300, duration=200, seed=25, canary_weight=100,
                        faults=(Fault("escalation", onset=20, ramp=120),)))
    esc = f.outcome == "escalated"
    # Mean strength over each 40 s third of the ramp is 1/6, 1/2, 5/6: escalation 12% * (1 + 2 s).
    expected = [0.12 * (1 + 2 * s) for s in (1 / 6, 1 / 2, 5 / 6)]
    observed = []
    for k, p in enumerate(expected):
        window = (f.rel >= 20 + 40 * k) & (f.rel < 60 + 40 * k)
        observed.append(esc[window].mean())
        assert close(observed[-1], p, int(window.sum())), (k, observed[-1], p)
    assert observed[0] < observed[1] < observed[2]
    assert close(esc[f.rel < 20].mean(), 0.12, int((f.rel < 20).sum()))
    assert close(esc[f.rel >= 140].mean(), 0.36, int((f.rel >= 140).sum()))


@pytest.mark.parametrize(
    ("kind", "metric", "lower", "upper"),
    [
        ("error", lambda f: f.outcome == "error", 4.0, 6.5),
        ("guardrail", lambda f: f.blocked, 3.8, 6.5),
        ("length", lambda f: f.length, 3.5, 6.5),
        ("latency", lambda f: np.where(f.outcome != "error", f.latency, np.nan), 1.8, 2.2),
        ("output_tokens", lambda f: np.where(f.outcome != "error", f.output_tokens, np.nan), 1.8, 2.2),
        ("csat", lambda f: np.where(f.csat > 0, f.csat <= 2, np.nan), 2.3, 3.3),
    ],
)
def test_each_fault_moves_its_metric_on_the_canary(kind: str, metric: Callable[[Frame], np.ndarray],
                                                   lower: float, upper: float) -> None:
    f = frame(SimConfig(rate=300, duration=60, seed=26, canary_weight=50, faults=(Fault(kind),)))
    values = metric(f).astype(float)
    # Rates compare means; latency and tokens (skewed) compare medians.
    stat = np.nanmedian if kind in ("latency", "output_tokens") else np.nanmean
    ratio = stat(values[f.canary]) / stat(values[~f.canary])
    assert lower < ratio < upper, ratio


# --- validation and parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": math.nan}, "rate"),
        ({"duration": -1}, "duration"),
        ({"canary_weight": 101}, "canary_weight"),
        ({"canary_weight": -0.1}, "canary_weight"),
        ({"seed": -1}, "seed"),
        ({"wave_period": 0}, "wave_period"),
        ({"wave_amplitude": 1.0}, "wave_amplitude"),
        ({"agent": ""}, "agent"),
        ({"canary_version": "v1"}, "canary_version"),
        ({"faults": ("escalation",)}, "faults"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} "):
        SimConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "escalation", "magnitude": 0}, "magnitude"),
        ({"kind": "escalation", "magnitude": -2}, "magnitude"),
        ({"kind": "latency", "onset": -1}, "onset"),
        ({"kind": "latency", "ramp": -5}, "ramp"),
        ({"kind": "latency", "duration": 0}, "duration"),
        ({"kind": "latency", "target": "shadow"}, "target"),
        ({"kind": "incident", "target": "canary"}, "target"),
        ({"kind": "latency", "tenant": "nobody"}, "tenant"),
    ],
)
def test_fault_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} "):
        Fault(**kwargs)


def test_unknown_fault_kind_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="^kind ") as info:
        Fault("explosion")
    assert all(kind in str(info.value) for kind in FAULT_KINDS)


def test_fault_defaults_per_kind() -> None:
    assert Fault("escalation") == Fault("escalation", magnitude=3.0, target="canary")
    assert Fault("incident").target == "both"
    assert all(Fault(kind).magnitude == magnitude for kind, magnitude in FAULT_KINDS.items())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("escalation", Fault("escalation")),
        ("escalation:magnitude=3,onset=60,ramp=30", Fault("escalation", onset=60, magnitude=3, ramp=30)),
        ("incident:onset=30,duration=60", Fault("incident", onset=30, duration=60)),
        (" latency : magnitude=1.5 , target=both ", Fault("latency", magnitude=1.5, target="both")),
        ("csat:duration=none,target=stable", Fault("csat", target="stable")),
        ("escalation:onset=60,tenant=acme", Fault("escalation", onset=60, tenant="acme")),
    ],
)
def test_fault_parse(text: str, expected: Fault) -> None:
    assert Fault.parse(text) == expected


@pytest.mark.parametrize(
    "fault",
    [Fault("escalation"), Fault("error", onset=12.5, magnitude=0.1 + 0.2, ramp=7, duration=30, target="both"),
     Fault("incident", onset=1e-3, duration=1e6), Fault("length", target="stable", magnitude=1234567.891),
     Fault("error", tenant="soylent")],
)
def test_fault_parse_round_trips(fault: Fault) -> None:
    assert Fault.parse(fault.spec()) == fault
    assert Fault.parse(str(fault)) == fault


@pytest.mark.parametrize(
    ("text", "match"),
    [("escalation:magnitude", "key=value"), ("escalation:magnitude=x", "magnitude must be a number"),
     ("escalation:speed=2", "unknown fault parameter"), ("escalation:onset=1,onset=2", "given twice"),
     ("boom:onset=1", "^kind "), ("error:magnitude=0", "^magnitude ")],
)
def test_fault_parse_rejects_bad_specs(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Fault.parse(text)


# --- output ------------------------------------------------------------------------------------------------
def test_write_jsonl_writes_the_generated_events(tmp_path: Path) -> None:
    config = SimConfig(rate=40, duration=20, seed=8)
    path = tmp_path / "events.jsonl"
    count = write_jsonl(config, path)
    lines = path.read_bytes().splitlines()
    assert count == len(lines) > 500
    assert [msgspec.json.decode(line) for line in lines] == list(generate(config))


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vigil")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["simulate", *argv])


def test_cli_writes_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    args = _cli(["--output", str(out), "--rate", "30", "--duration", "20", "--seed", "3", "--canary-weight",
                 "40", "--agent", "voice-bot", "--stable-version", "a", "--canary-version", "b",
                 "--fault", "escalation:onset=5", "--fault", "incident:onset=10,duration=5"])
    assert args.func(args) == 0
    lines = out.read_bytes().splitlines()
    err = capsys.readouterr().err
    assert f"simulate: wrote {len(lines)} events to {out}" in err
    events = [decode_line(line) for line in lines]
    assert {e.data.agent for e in events} == {"voice-bot"}
    assert {(e.data.track, e.data.version) for e in events} == {("stable", "a"), ("canary", "b")}
    faults = (Fault("escalation", onset=5), Fault("incident", onset=10, duration=5))
    expected = SimConfig(rate=30, duration=20, seed=3, canary_weight=40, agent="voice-bot",
                         stable_version="a", canary_version="b", faults=faults)
    assert lines == [msgspec.json.encode(e) for e in generate(expected)]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        ([], "--output FILE or --bootstrap"),
        (["--bootstrap", "localhost:9092"], "both --bootstrap and --topic"),
        (["--output", "x.jsonl", "--topic", "t"], "not both"),
        (["--output", "x.jsonl", "--rate", "-1"], "rate must be"),
        (["--output", "x.jsonl", "--fault", "escalation:magnitude=0"], "magnitude must be > 0"),
        (["--output", "x.jsonl", "--fault", "meteor"], "kind must be one of"),
    ],
)
def test_cli_rejects_bad_arguments(
    argv: list[str], match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    args = _cli(argv)
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("vigil simulate: error: ") and match in err
    assert not (tmp_path / "x.jsonl").exists()


# --- faults added for issue 9: tool errors, abandonment, evaluation, intent mix, model, several canaries --------
def _data(config: SimConfig) -> tuple[Frame, list[dict[str, Any]]]:
    events = list(generate(config))
    return Frame(config, events), [e["data"] for e in events]


@pytest.mark.parametrize(("kind", "lower", "upper"), [("tool_error", 4.0, 6.0), ("abandonment", 2.5, 3.5),
                                                      ("evaluation", 0.87, 0.93)])
def test_new_faults_move_their_metric_on_the_canary_after_onset_only(kind: str, lower: float, upper: float) -> None:
    onset = 30.0
    f, data = _data(SimConfig(rate=300, duration=90, seed=31, canary_weight=50, faults=(Fault(kind, onset=onset),)))
    if kind == "tool_error":
        calls = np.array([len(d["tool_calls"]) for d in data], float)
        bad = np.array([sum(c["error_type"] is not None for c in d["tool_calls"]) for d in data], float)

        def stat(sel: np.ndarray) -> float:
            return float(bad[sel].sum() / calls[sel].sum())
    elif kind == "abandonment":
        def stat(sel: np.ndarray) -> float:
            return float((f.outcome[sel] == "abandoned").mean())
    else:
        score = np.array([d["evaluations"][0]["score"] if d["evaluations"] else np.nan for d in data])

        def stat(sel: np.ndarray) -> float:
            return float(np.nanmean(score[sel]))
    before, after = f.rel < onset, f.rel >= onset
    assert lower < stat(after & f.canary) / stat(after & ~f.canary) < upper
    assert 0.8 < stat(before & f.canary) / stat(before & ~f.canary) < 1.25, "absent before the onset"
    assert 0.8 < stat(after & ~f.canary) / stat(before & ~f.canary) < 1.25, "the stable is unaffected"


def test_intent_shift_and_model_switch_hit_the_canary_after_onset() -> None:
    f, data = _data(SimConfig(rate=300, duration=90, seed=32, canary_weight=50,
                              faults=(Fault("intent_shift", onset=30), Fault("model_switch", onset=30))))
    tech = np.array([d["intent"] == "tech_support" for d in data])
    other = np.array([d["model"] != "gpt-4o-mini" for d in data])
    after = f.rel >= 30
    assert 1.7 < tech[after & f.canary].mean() / tech[after & ~f.canary].mean() < 2.3
    assert abs(z_two(tech[~after & f.canary], tech[~after & ~f.canary])) < 3.5
    assert other[after & f.canary].all() and not other[~after | ~f.canary].any()


def test_sparse_feedback_and_evaluation_shares() -> None:
    config = SimConfig(rate=200, duration=60, seed=33, feedback_share=0.1, evaluation_share=0.5)
    f, data = _data(config)
    assert close((f.csat > 0).mean(), 0.1, f.csat.size)
    ok = f.outcome != "error"
    assert close(np.mean([bool(d["evaluations"]) for d, o in zip(data, ok, strict=True) if o]), 0.5,
                 int(ok.sum()))


def test_several_canaries_share_the_canary_traffic_and_a_fault_can_target_one() -> None:
    config = SimConfig(rate=300, duration=90, seed=34, canary_weight=50, extra_canary_versions=("v3",),
                       faults=(Fault("error", onset=30, version="v3"),))
    f, data = _data(config)
    version = np.array([d["version"] for d in data])
    assert set(version[f.canary]) == {"v2", "v3"} and set(version[~f.canary]) == {"v1"}
    assert close((version[f.canary] == "v3").mean(), 0.5, int(f.canary.sum()))
    err, after = f.outcome == "error", f.rel >= 30
    assert err[after & (version == "v3")].mean() > 0.06
    assert err[after & (version == "v2")].mean() < 0.03 and err[~after & (version == "v3")].mean() < 0.03
    with pytest.raises(ValueError, match="^faults: version"):
        SimConfig(faults=(Fault("error", version="v9"),))


def test_default_output_is_unchanged_by_the_new_options() -> None:
    config = SimConfig(rate=50, duration=20, seed=3, faults=(Fault("latency", onset=5),))
    same = dataclasses.replace(config, feedback_share=0.30, evaluation_share=1.0, extra_canary_versions=())
    assert fingerprint(generate(config)) == fingerprint(generate(same))


@pytest.mark.parametrize("onset", [300.0, 400.0])
def test_a_fault_whose_onset_is_at_or_beyond_the_duration_is_refused(onset: float) -> None:
    with pytest.raises(ValueError, match="^onset "):
        SimConfig(duration=300, faults=(Fault("error", onset=onset),))
    SimConfig(duration=math.inf, faults=(Fault("error", onset=onset),))  # endless: it will start


def test_cli_refuses_a_fault_after_the_end_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli(["--output", str(tmp_path / "x.jsonl"), "--duration", "60", "--fault", "error:onset=60"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("vigil simulate: error: onset ") and err.count("\n") == 1
    assert not (tmp_path / "x.jsonl").exists()
