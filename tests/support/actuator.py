"""Actuator helpers: a rollout with Deployments in a namespace, and a recording ``apply``."""

from __future__ import annotations

from typing import Any

from controller.config import Rollout, parse_rollout
from controller.contracts.decisions import Decision


def rollout(**spec: Any) -> Rollout:
    base: dict[str, Any] = {"agent": "bot", "stable": {"version": "v1", "deployment": "bot-v1"},
                            "canary": {"version": "v2", "deployment": "bot-v2"}}
    return parse_rollout({"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout",
                          "metadata": {"name": "bot-rollout", "namespace": "shop"}, "spec": {**base, **spec}})


class Recorder:
    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = list(failures or [])
        self.applied: list[Decision] = []
        self.calls = 0

    async def __call__(self, d: Decision) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.applied.append(d)
