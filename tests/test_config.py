"""Tests of the ``AgentRollout`` parser (``controller.config``): defaults, durations, field-path errors."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from controller.config import (
    API_VERSION,
    Analysis,
    ConfigError,
    MetricOverride,
    Rollout,
    Step,
    Workload,
    load_rollouts,
    parse_duration,
    parse_rollout,
)


def minimal(agent: str = "support-bot") -> dict[str, Any]:
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "AgentRollout",
        "metadata": {"name": f"{agent}-rollout"},
        "spec": {"agent": agent, "stable": {"version": "v1"}, "canary": {"version": "v2"}},
    }


def full() -> dict[str, Any]:
    doc = minimal()
    doc["spec"].update({
        "stable": {"version": "v1", "deployment": "bot-v1"},
        "canary": {"version": "v2", "deployment": "bot-v2"},
        "steps": [{"setWeight": 10}, {"pause": {"duration": "5m"}}, {"setWeight": 50.5},
                  {"pause": {"duration": 30}}],
        "analysis": {
            "alpha": 0.05, "minSamples": 200, "baselineMinSamples": 80, "bucketSeconds": 2,
            "allowedLateness": "250ms", "idleTimeout": "2m", "window": "1h",
            "metrics": [{"name": "escalation_rate"},
                        {"name": "latency_ms", "direction": "increase", "critical": False, "minSamples": 500},
                        {"name": "eval:helpfulness"}],
            "segments": ["tenant", "channel"], "maxSegments": 8,
        },
        "rollback": {"scaleCanaryToZero": False},
    })
    return doc


def error_of(doc: Any, path: str = "") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_rollout(doc, path)
    return info.value


# --- valid documents ------------------------------------------------------------------------------------
def test_api_version_constant() -> None:
    assert API_VERSION == "vigil.dev/v1alpha1"


def test_minimal_rollout_has_documented_defaults() -> None:
    r = parse_rollout(minimal())
    assert r.agent == "support-bot" and r.name == "support-bot-rollout"
    assert r.stable == Workload("v1") and r.canary == Workload("v2")
    assert r.stable.deployment is None
    assert r.steps == ()  # watch only
    assert r.scale_canary_to_zero is True
    a = r.analysis
    assert a == Analysis()
    assert (a.alpha, a.min_samples, a.baseline_min_samples, a.bucket_seconds) == (0.01, 50, 50, 1)
    assert (a.allowed_lateness, a.idle_timeout, a.window, a.metrics) == (5.0, 60.0, 60.0, ())
    assert (a.segments, a.max_segments) == ((), 20)  # no segment tests: one pooled test per metric


def test_minimal_rollout_without_metadata() -> None:
    doc = minimal()
    del doc["metadata"]
    assert parse_rollout(doc).name is None


def test_full_rollout_parses_every_field() -> None:
    r = parse_rollout(full())
    assert r.stable == Workload("v1", "bot-v1") and r.canary == Workload("v2", "bot-v2")
    assert r.steps == (Step(set_weight=10.0), Step(pause=300.0), Step(set_weight=50.5), Step(pause=30.0))
    assert r.scale_canary_to_zero is False
    a = r.analysis
    assert (a.alpha, a.min_samples, a.baseline_min_samples, a.bucket_seconds) == (0.05, 200, 80, 2)
    assert a.allowed_lateness == pytest.approx(0.25)
    assert (a.idle_timeout, a.window) == (120.0, 3600.0)
    assert a.metrics == (MetricOverride("escalation_rate"),
                         MetricOverride("latency_ms", "increase", False, 500),
                         MetricOverride("eval:helpfulness"))
    assert (a.segments, a.max_segments) == (("tenant", "channel"), 8)


def test_parse_does_not_modify_the_document() -> None:
    doc = full()
    before = copy.deepcopy(doc)
    parse_rollout(doc)
    assert doc == before


def test_default_rollout_is_track_mode() -> None:
    r = Rollout()
    assert r.agent is None and r.stable is None and r.canary is None and r.steps == ()


# --- durations ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), ("1.5m", 90.0), (" 10 s ", 10.0),
     ("45", 45.0), (30, 30.0), (1.5, 1.5), (0, 0.0), ("0s", 0.0), ("0", 0.0),
     # Go durations as Kubernetes and Argo Rollouts write them
     ("1h30m", 5400.0), ("5m30s", 330.0), ("1.5h", 5400.0), ("2h45m30.5s", 9930.5), ("1m500ms", 60.5),
     ("+30s", 30.0), ("500us", 0.0005), ("500µs", 0.0005), (".5s", 0.5)],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    assert parse_duration(value, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["5 minutes", "5d", "-5s", "s", "", "1e3s", None, True, [5], "1w", "1y",
                                   "5m 30s", "1h-30m", "1.2.3s", "m5", "-1h30m", "30S", float("nan"),
                                   float("inf"), "inf", {"seconds": 5}])
def test_parse_duration_refuses(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "spec.analysis.window")
    assert str(info.value).startswith("spec.analysis.window: ")
    assert info.value.path == "spec.analysis.window"


def test_negative_number_is_not_a_duration() -> None:
    with pytest.raises(ConfigError, match=r"^p: must not be negative"):
        parse_duration(-1, "p")


# --- invalid documents ----------------------------------------------------------------------------------
Mutation = Callable[[dict[str, Any]], None]


def _set(path: list[Any], value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _delete(path: list[Any]) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


def steps(*items: Any) -> Mutation:
    return _set(["spec", "steps"], list(items))


def analysis(**fields: Any) -> Mutation:
    return _set(["spec", "analysis"], fields)


def metrics(*items: Any) -> Mutation:
    return analysis(metrics=list(items))


INVALID: list[tuple[str, Mutation, str]] = [
    ("wrong apiVersion", _set(["apiVersion"], "vigil.dev/v1"), "apiVersion"),
    ("missing apiVersion", _delete(["apiVersion"]), "apiVersion"),
    ("wrong kind", _set(["kind"], "Rollout"), "kind"),
    ("metadata not a map", _set(["metadata"], ["x"]), "metadata"),
    ("missing spec", _delete(["spec"]), "spec"),
    ("spec not a map", _set(["spec"], "yes"), "spec"),
    ("unknown spec field", _set(["spec", "replicas"], 3), "spec.replicas"),
    ("missing agent", _delete(["spec", "agent"]), "spec.agent"),
    ("empty agent", _set(["spec", "agent"], ""), "spec.agent"),
    ("agent not a string", _set(["spec", "agent"], 42), "spec.agent"),
    ("missing stable", _delete(["spec", "stable"]), "spec.stable"),
    ("missing canary", _delete(["spec", "canary"]), "spec.canary"),
    ("stable not a map", _set(["spec", "stable"], "v1"), "spec.stable"),
    ("stable without version", _set(["spec", "stable"], {"deployment": "d"}), "spec.stable.version"),
    ("empty stable version", _set(["spec", "stable", "version"], ""), "spec.stable.version"),
    ("numeric canary version", _set(["spec", "canary", "version"], 2), "spec.canary.version"),
    ("canary deployment not a string", _set(["spec", "canary", "deployment"], 3), "spec.canary.deployment"),
    ("unknown workload field", _set(["spec", "canary", "image"], "x"), "spec.canary.image"),
    ("stable equals canary", _set(["spec", "canary", "version"], "v1"), "spec.canary.version"),
    ("steps not a list", _set(["spec", "steps"], {"setWeight": 10}), "spec.steps"),
    ("step not a map", steps({"setWeight": 5}, 10), "spec.steps[1]"),
    ("weight above 100", steps({"setWeight": 5}, {"setWeight": 101}), "spec.steps[1].setWeight"),
    ("negative weight", steps({"setWeight": -1}), "spec.steps[0].setWeight"),
    ("weight as string", steps({"setWeight": "10"}), "spec.steps[0].setWeight"),
    ("weight as bool", steps({"setWeight": True}), "spec.steps[0].setWeight"),
    ("two actions in a step", steps({"setWeight": 5, "pause": {"duration": 1}}), "spec.steps[0]"),
    ("empty step", steps({}), "spec.steps[0]"),
    ("unknown step field", steps({"setWeight": 5}, {"analysis": {}}), "spec.steps[1].analysis"),
    ("pause not a map", steps({"pause": "5m"}), "spec.steps[0].pause"),
    ("indefinite pause", steps({"setWeight": 5}, {"pause": {}}), "spec.steps[1].pause.duration"),
    ("bad pause duration", steps({"pause": {"duration": "soon"}}), "spec.steps[0].pause.duration"),
    ("negative pause", steps({"pause": {"duration": -5}}), "spec.steps[0].pause.duration"),
    ("unknown pause field", steps({"pause": {"duration": 1, "until": 2}}), "spec.steps[0].pause.until"),
    ("analysis not a map", _set(["spec", "analysis"], [1]), "spec.analysis"),
    ("unknown analysis field", analysis(beta=0.2), "spec.analysis.beta"),
    ("alpha zero", analysis(alpha=0), "spec.analysis.alpha"),
    ("alpha one", analysis(alpha=1), "spec.analysis.alpha"),
    ("alpha above one", analysis(alpha=1.5), "spec.analysis.alpha"),
    ("negative alpha", analysis(alpha=-0.01), "spec.analysis.alpha"),
    ("alpha as string", analysis(alpha="0.01"), "spec.analysis.alpha"),
    ("alpha as bool", analysis(alpha=True), "spec.analysis.alpha"),
    ("minSamples zero", analysis(minSamples=0), "spec.analysis.minSamples"),
    ("minSamples float", analysis(minSamples=10.5), "spec.analysis.minSamples"),
    ("baselineMinSamples negative", analysis(baselineMinSamples=-1), "spec.analysis.baselineMinSamples"),
    ("bucketSeconds zero", analysis(bucketSeconds=0), "spec.analysis.bucketSeconds"),
    ("bucketSeconds as duration", analysis(bucketSeconds="1s"), "spec.analysis.bucketSeconds"),
    ("bad allowedLateness", analysis(allowedLateness="late"), "spec.analysis.allowedLateness"),
    ("negative idleTimeout", analysis(idleTimeout=-1), "spec.analysis.idleTimeout"),
    ("bad window", analysis(window="5x"), "spec.analysis.window"),
    ("negative stratum", analysis(stratum=-1), "spec.analysis.stratum"),
    ("promotion not a map", analysis(promotion=True), "spec.analysis.promotion"),
    ("promotion oddsRatio one", analysis(promotion={"oddsRatio": 1}), "spec.analysis.promotion.oddsRatio"),
    ("promotion increase zero", analysis(promotion={"increase": 0}), "spec.analysis.promotion.increase"),
    ("promotion power below half", analysis(promotion={"power": 0.4}), "spec.analysis.promotion.power"),
    ("promotion power one", analysis(promotion={"power": 1}), "spec.analysis.promotion.power"),
    ("promotion evidence a string", analysis(promotion={"evidence": "yes"}), "spec.analysis.promotion.evidence"),
    ("unknown promotion field", analysis(promotion={"margin": 2}), "spec.analysis.promotion.margin"),
    ("metric weight zero", metrics({"name": "error_rate", "weight": 0}), "spec.analysis.metrics[0].weight"),
    ("metric weight a string", metrics({"name": "error_rate", "weight": "high"}), "spec.analysis.metrics[0].weight"),
    ("metrics not a list", analysis(metrics="escalation_rate"), "spec.analysis.metrics"),
    ("metric not a map", metrics("escalation_rate"), "spec.analysis.metrics[0]"),
    ("unknown metric", metrics({"name": "happiness"}), "spec.analysis.metrics[0].name"),
    ("metric without name", metrics({"name": "error_rate"}, {"critical": True}),
     "spec.analysis.metrics[1].name"),
    ("empty evaluation name", metrics({"name": "eval:"}), "spec.analysis.metrics[0].name"),
    ("bad direction", metrics({"name": "latency_ms", "direction": "up"}),
     "spec.analysis.metrics[0].direction"),
    ("critical as string", metrics({"name": "latency_ms", "critical": "no"}),
     "spec.analysis.metrics[0].critical"),
    ("metric minSamples zero", metrics({"name": "latency_ms", "minSamples": 0}),
     "spec.analysis.metrics[0].minSamples"),
    ("unknown metric field", metrics({"name": "latency_ms", "window": 5}), "spec.analysis.metrics[0].window"),
    ("segments not a list", analysis(segments="tenant"), "spec.analysis.segments"),
    ("unknown segment dimension", analysis(segments=["tenant", "region"]), "spec.analysis.segments[1]"),
    ("segment not a string", analysis(segments=[{"tenant": True}]), "spec.analysis.segments[0]"),
    ("segment listed twice", analysis(segments=["channel", "channel"]), "spec.analysis.segments[1]"),
    ("maxSegments zero", analysis(segments=["tenant"], maxSegments=0), "spec.analysis.maxSegments"),
    ("maxSegments negative", analysis(maxSegments=-3), "spec.analysis.maxSegments"),
    ("maxSegments float", analysis(maxSegments=2.5), "spec.analysis.maxSegments"),
    ("maxSegments unbounded", analysis(maxSegments=10 ** 6), "spec.analysis.maxSegments"),
    ("rollback not a map", _set(["spec", "rollback"], "always"), "spec.rollback"),
    ("unknown rollback field", _set(["spec", "rollback"], {"scaleToZero": True}),
     "spec.rollback.scaleToZero"),
    ("scaleCanaryToZero as string", _set(["spec", "rollback"], {"scaleCanaryToZero": "no"}),
     "spec.rollback.scaleCanaryToZero"),
]


@pytest.mark.parametrize(("mutate", "path"), [(m, p) for _, m, p in INVALID], ids=[c for c, _, _ in INVALID])
def test_invalid_value_names_its_field_path(mutate: Mutation, path: str) -> None:
    doc = minimal()
    mutate(doc)
    err = error_of(doc)
    assert err.path == path
    assert str(err).startswith(f"{path}: ")
    assert len(str(err)) > len(path) + 2  # it says what is wrong


@pytest.mark.parametrize(("mutate", "path"), [(m, p) for _, m, p in INVALID[:12]],
                         ids=[c for c, _, _ in INVALID[:12]])
def test_file_path_prefixes_the_field_path(mutate: Mutation, path: str) -> None:
    doc = minimal()
    mutate(doc)
    assert str(error_of(doc, "rollouts/bot.yaml")).startswith(f"rollouts/bot.yaml:{path}: ")


@pytest.mark.parametrize("doc", [None, [], "AgentRollout", 5])
def test_document_that_is_not_a_map(doc: Any) -> None:
    assert error_of(doc).path == "$"


def test_first_unknown_field_is_named_with_the_allowed_ones() -> None:
    doc = minimal()
    doc["spec"]["zeta"] = 1
    doc["spec"]["beta"] = 2
    err = error_of(doc)
    assert err.path == "spec.beta"
    assert "agent" in str(err) and "canary" in str(err) and "steps" in str(err)


def test_errors_are_value_errors() -> None:
    doc = minimal()
    doc["spec"]["analysis"] = {"alpha": 2}
    with pytest.raises(ValueError, match=r"^spec\.analysis\.alpha: must be in \(0, 1\)"):
        parse_rollout(doc)


# --- files ----------------------------------------------------------------------------------------------
DOC_A = """\
apiVersion: vigil.dev/v1alpha1
kind: AgentRollout
metadata: {name: a}
spec:
  agent: agent-a
  stable: {version: v1}
  canary: {version: v2}
  steps:
    - setWeight: 20
    - pause: {duration: 10m}
"""
DOC_B = """\
apiVersion: vigil.dev/v1alpha1
kind: AgentRollout
spec:
  agent: agent-b
  stable: {version: "1.0"}
  canary: {version: "1.1"}
  analysis: {alpha: 0.02}
"""


def test_load_rollouts_reads_every_document(tmp_path: Path) -> None:
    first = tmp_path / "two.yaml"
    first.write_text(DOC_A + "---\n" + DOC_B)
    second = tmp_path / "one.yaml"
    second.write_text(DOC_B.replace("agent-b", "agent-c"))
    rollouts = load_rollouts([str(first), str(second)])
    assert [r.agent for r in rollouts] == ["agent-a", "agent-b", "agent-c"]
    assert rollouts[0].steps == (Step(set_weight=20.0), Step(pause=600.0))
    assert rollouts[1].canary == Workload("1.1") and rollouts[1].analysis.alpha == 0.02
    assert rollouts[0].name == "a" and rollouts[1].name is None


def test_load_rollouts_skips_empty_documents(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("---\n" + DOC_A + "---\n---\n")
    assert [r.agent for r in load_rollouts([str(f)])] == ["agent-a"]


def test_load_rollouts_refuses_a_duplicate_agent(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text(DOC_A)
    second = tmp_path / "b.yaml"
    second.write_text(DOC_B + "---\n" + DOC_A.replace("name: a", "name: again"))
    with pytest.raises(ConfigError) as info:
        load_rollouts([str(first), str(second)])
    msg = str(info.value)
    assert "spec.agent" in info.value.path and str(second) in info.value.path
    assert "'agent-a'" in msg and str(first) in msg


def test_load_rollouts_refuses_a_duplicate_agent_within_a_file(tmp_path: Path) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text(DOC_A + "---\n" + DOC_A)
    with pytest.raises(ConfigError, match="agent-a"):
        load_rollouts([str(f)])


def test_error_in_a_multi_document_file_names_the_document(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(DOC_A + "---\n" + DOC_B.replace("alpha: 0.02", "alpha: 3"))
    with pytest.raises(ConfigError) as info:
        load_rollouts([str(f)])
    assert str(info.value).startswith(f"{f}[1]:spec.analysis.alpha: ")


def test_error_in_a_single_document_file_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(DOC_A.replace("setWeight: 20", "setWeight: 200"))
    with pytest.raises(ConfigError) as info:
        load_rollouts([str(f)])
    assert str(info.value).startswith(f"{f}:spec.steps[0].setWeight: ")


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_rollouts([str(missing)])
    assert info.value.path == str(missing) and "cannot read" in str(info.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_rollouts([str(broken)])
    assert info.value.path == str(broken) and "not valid YAML" in str(info.value)


def test_segment_errors_say_what_is_allowed() -> None:
    # the allowed values and the range are those the structs declare (a Literal, msgspec.Meta(ge=1, le=1000))
    doc = minimal()
    doc["spec"]["analysis"] = {"segments": ["region"]}
    assert str(error_of(doc)) == "spec.analysis.segments[0]: must be one of channel, tenant, got 'region'"
    doc["spec"]["analysis"] = {"maxSegments": 0}
    assert str(error_of(doc)) == "spec.analysis.maxSegments: must be between 1 and 1000, got 0"


# --- the structs: unknown fields, Go durations, types -----------------------------------------------------
@pytest.mark.parametrize(("mutate", "path"), [
    (_set(["status"], {"phase": "Progressing"}), None),  # what the API server hands back is accepted
    (_set(["extra"], 1), "extra"),
    (_set(["spec", "name"], "x"), "spec.name"),  # metadata fields are not spec fields
    (_set(["spec", "namespace"], "prod"), "spec.namespace"),
    (_set(["spec", "analysis"], {"alpha": 0.02, "gamma": 1}), "spec.analysis.gamma"),
    (metrics({"name": "latency_ms", "threshold": 5}), "spec.analysis.metrics[0].threshold"),
    (steps({"pause": {"duration": "1m", "untilApproved": True}}), "spec.steps[0].pause.untilApproved"),
    (_set(["spec", "notifications"], [{"webhook": "https://x", "secretRef": {"name": "s", "key": "k", "ns": "a"}}]),
     "spec.notifications[0].secretRef.ns"),
    (_set(["spec", "traffic"], {"router": "none", "weight": 5}), "spec.traffic.weight"),
])
def test_unknown_fields_are_refused_at_every_level(mutate: Mutation, path: str | None) -> None:
    doc = minimal()
    mutate(doc)
    if path is None:
        assert parse_rollout(doc).agent == "support-bot"
        return
    err = error_of(doc)
    assert err.path == path
    assert str(err).startswith(f"{path}: unknown field (allowed: ")


def test_metadata_may_hold_what_the_api_server_adds() -> None:
    doc = minimal()
    doc["metadata"].update(namespace="prod", uid="0d1e", resourceVersion="42", labels={"team": "ml"})
    r = parse_rollout(doc)
    assert (r.name, r.namespace) == ("support-bot-rollout", "prod")


def test_go_durations_in_every_duration_field() -> None:
    doc = minimal()
    doc["spec"].update(steps=[{"setWeight": 10}, {"pause": {"duration": "1h30m"}}],
                       analysis={"allowedLateness": "1m30s", "idleTimeout": "1.5h", "window": "2h0m0s"},
                       rollback={"cooldown": "1h30m"})
    r = parse_rollout(doc)
    assert r.steps[1] == Step(pause=5400.0)
    assert (r.analysis.allowed_lateness, r.analysis.idle_timeout, r.analysis.window) == (90.0, 5400.0, 7200.0)
    assert r.rollback.cooldown == 5400.0


def test_durations_are_plain_floats_and_the_settings_encode() -> None:
    r = parse_rollout(full())
    assert type(r.analysis.window) is float and type(r.steps[1].pause) is float
    assert msgspec.json.decode(msgspec.json.encode(r))["analysis"]["window"] == 3600.0


@pytest.mark.parametrize(("mutate", "message"), [
    (analysis(minSamples="50"), "spec.analysis.minSamples: expected int, got str '50'"),
    (analysis(alpha=[0.1]), "spec.analysis.alpha: expected float, got list [0.1]"),
    (_set(["spec", "paused"], "yes"), "spec.paused: expected bool, got str 'yes'"),
    (_set(["spec", "stable", "version"], 1.0), "spec.stable.version: expected str, got float 1.0"),
    (_set(["spec", "steps"], "10%"), "spec.steps: expected list, got str '10%'"),
    (_set(["spec", "rollback"], {"maxActions": 2.5}), "spec.rollback.maxActions: expected int, got float 2.5"),
    (_set(["spec", "traffic"], {"router": 3}), "spec.traffic.router: expected str, got int 3"),
    (steps({"pause": {"duration": True}}),
     "spec.steps[0].pause.duration: expected a number of seconds or a duration like 30s, 5m or 1h30m, got True"),
    (_set(["kind"], None), "kind: expected str, got null"),
])
def test_wrong_type_is_named_with_the_path(mutate: Mutation, message: str) -> None:
    doc = minimal()
    mutate(doc)
    assert str(error_of(doc)) == message


def test_settings_are_frozen_structs_with_defaults() -> None:
    r = Rollout()
    with pytest.raises(AttributeError):
        r.agent = "x"  # type: ignore[misc]
    assert r.analysis == Analysis() and r.traffic.router == "none" and r.rollback.cooldown == 300.0
    assert hash(parse_rollout(full())) == hash(parse_rollout(full()))
    assert msgspec.structs.fields(Analysis)[3].encode_name == "bucketSeconds"  # camelCase in the document


def test_cross_field_errors_keep_the_file_prefix() -> None:
    doc = minimal()
    doc["spec"]["traffic"] = {"router": "istio"}
    assert str(error_of(doc, "r.yaml")) == "r.yaml:spec.traffic.name: required with router istio (the " \
                                           "VirtualService to weight)"


@pytest.mark.parametrize(("mutate", "message"), [
    (_set(["spec", "canary", "deployment"], "Bot_V2"),
     "spec.canary.deployment: must be a Kubernetes name (lower-case letters, digits, '-' and '.'), got 'Bot_V2'"),
    (_set(["spec", "stable", "service"], "s" * 254), "spec.stable.service: must be at most 253 characters, got 254"),
    (_set(["spec", "notifications"], [{"webhook": "hooks.example/x"}]),
     "spec.notifications[0].webhook: must be an http or https URL, got 'hooks.example/x'"),
    (_set(["spec", "traffic"], {"router": "linkerd"}),
     "spec.traffic.router: must be one of gatewayAPI, istio, none, replicas, got 'linkerd'"),
    (_set(["apiVersion"], "vigil.dev/v1beta1"), "apiVersion: must be vigil.dev/v1alpha1, got 'vigil.dev/v1beta1'"),
])
def test_constraint_errors_say_what_is_allowed(mutate: Mutation, message: str) -> None:
    doc = minimal()
    mutate(doc)
    assert str(error_of(doc)) == message
