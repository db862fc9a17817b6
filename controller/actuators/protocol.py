"""The actuator protocol: where decisions turn into traffic weights and rollbacks.

:class:`ClusterBackend` is the interface; :class:`~controller.actuators.memory.InMemoryCluster` implements
it with no cluster (the demo, replay and tests), and
:class:`~controller.actuators.kubernetes.KubernetesCluster` against a real API server.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from controller.contracts.decisions import Decision

__all__ = ["ClusterBackend", "apply_decision"]


@runtime_checkable
class ClusterBackend(Protocol):
    async def set_weights(self, agent: str, weights: dict[str, float]) -> None:
        """Route traffic to versions by percent; the weights sum to 100."""

    async def rollback(self, agent: str, stable: str, canary: str, scale_to_zero: bool) -> None:
        """All traffic back to ``stable``; then scale ``canary`` to zero or keep it warm."""

    async def promote(self, agent: str, version: str) -> None:
        """Make ``version`` the stable one, with all traffic."""

    def weights(self, agent: str) -> dict[str, float]:
        """The weights in force now."""


async def apply_decision(cluster: ClusterBackend, decision: Decision, stable: str,
                         scale_to_zero: bool = True) -> None:
    """Carry one decision out on the cluster (alerts and pauses change nothing there)."""
    if decision.action == "set_weight":
        await cluster.set_weights(decision.agent, decision.weights)
    elif decision.action == "rollback":
        await cluster.rollback(decision.agent, stable, decision.version, scale_to_zero)
    elif decision.action == "promote":
        await cluster.promote(decision.agent, decision.version)
