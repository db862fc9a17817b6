"""The Kubernetes-facing fields of ``AgentRollout``: traffic router, rollback policy, pause, notifications."""

from __future__ import annotations

from typing import Any

import pytest

from controller.config import ConfigError, Notification, RollbackPolicy, SecretRef, Traffic, parse_rollout


def doc(**spec: Any) -> dict[str, Any]:
    base = {"agent": "bot", "stable": {"version": "v1", "deployment": "bot-v1"},
            "canary": {"version": "v2", "deployment": "bot-v2"}}
    return {"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout",
            "metadata": {"name": "bot", "namespace": "prod"}, "spec": {**base, **spec}}


def test_defaults_watch_only_with_safe_rollback() -> None:
    r = parse_rollout(doc())
    assert r.traffic == Traffic() and r.traffic.router == "none"
    assert r.rollback == RollbackPolicy(scale_canary_to_zero=True, cooldown=300.0, max_actions=10)
    assert r.paused is False and r.notifications == () and r.namespace == "prod"
    assert r.scale_canary_to_zero is True


def test_every_field_parses() -> None:
    r = parse_rollout(doc(
        stable={"version": "v1", "deployment": "bot-v1", "service": "bot-stable"},
        traffic={"router": "istio", "name": "bot-vs", "route": "primary"},
        rollback={"scaleCanaryToZero": False, "cooldown": "10m", "maxActions": 3}, paused=True,
        notifications=[{"webhook": "https://hooks.example/x", "actions": ["rollback"],
                        "secretRef": {"name": "hook", "key": "token"}}]))
    assert r.stable is not None and r.stable.service == "bot-stable"
    assert r.traffic == Traffic("istio", "bot-vs", "primary", None)
    assert r.rollback == RollbackPolicy(False, 600.0, 3) and r.paused
    assert r.notifications == (Notification("https://hooks.example/x", ("rollback",), SecretRef("hook", "token")),)
    rr = parse_rollout(doc(traffic={"router": "replicas", "replicas": 6}))
    assert rr.traffic == Traffic("replicas", None, None, 6)


@pytest.mark.parametrize(("spec", "field"), [
    ({"traffic": {"router": "nginx"}}, "spec.traffic.router"),
    ({"traffic": {"router": "gatewayAPI"}}, "spec.traffic.name"),
    ({"traffic": {"router": "istio", "name": "Bad_Name"}}, "spec.traffic.name"),
    ({"traffic": {"router": "gatewayAPI", "name": "r", "route": "x"}}, "spec.traffic.route"),
    ({"traffic": {"router": "none", "replicas": 3}}, "spec.traffic.replicas"),
    ({"traffic": {"router": "replicas", "replicas": 0}}, "spec.traffic.replicas"),
    ({"traffic": {"router": "replicas"}, "canary": {"version": "v2", "deployment": "bot-v1"}}, "spec.traffic.router"),
    ({"traffic": {"router": "replicas"}, "canary": {"version": "v2"}}, "spec.traffic.router"),
    ({"traffic": {"weights": 1}}, "spec.traffic.weights"),
    ({"rollback": {"cooldown": "soon"}}, "spec.rollback.cooldown"),
    ({"rollback": {"maxActions": 0}}, "spec.rollback.maxActions"),
    ({"rollback": {"scaleCanaryToZero": "yes"}}, "spec.rollback.scaleCanaryToZero"),
    ({"paused": 1}, "spec.paused"),
    ({"notifications": [{"webhook": "ftp://x"}]}, "spec.notifications[0].webhook"),
    ({"notifications": [{"webhook": "https://x", "actions": ["page"]}]}, "spec.notifications[0].actions[0]"),
    ({"notifications": [{"webhook": "https://x", "secretRef": {"name": "s"}}]}, "spec.notifications[0].secretRef.key"),
    ({"stable": {"version": "v1", "service": "has space"}}, "spec.stable.service"),
])
def test_invalid_fields_are_refused_by_path(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_rollout(doc(**spec))
    assert err.value.path == field, str(err.value)
