"""Kubernetes backend helpers: a target, a backend on the emulated API with a fake clock."""

from __future__ import annotations

from typing import Any

import kubernetes

from controller.actuators.kubernetes import KubernetesCluster, KubeTarget, RetryPolicy

POLICY = RetryPolicy(attempts=4, base_delay=0.1, max_delay=1.0, jitter=0.0)


class FakeSleep:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def target(ns: str, router: str = "gatewayAPI", **kw: Any) -> KubeTarget:
    fields: dict[str, Any] = {"namespace": ns, "name": "bot", "agent": "bot", "stable_version": "v1",
                              "canary_version": "v2", "stable_deployment": "bot-v1", "canary_deployment": "bot-v2",
                              "router": router, "route_name": "bot" if router in ("gatewayAPI", "istio") else None}
    return KubeTarget(**(fields | kw))


def backend(client: kubernetes.client.ApiClient, t: KubeTarget, sleep: FakeSleep, **kw: Any) -> KubernetesCluster:
    return KubernetesCluster(client, {t.agent: t}, **({"policy": POLICY, "sleep": sleep} | kw))
