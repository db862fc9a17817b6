"""The in-memory actuator: the :class:`~controller.actuators.protocol.ClusterBackend` interface with no
API server, for the demo, replay and tests."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["InMemoryCluster", "Workloads"]


@dataclass
class Workloads:
    """What the in-memory cluster knows of one agent."""

    weights: dict[str, float] = field(default_factory=dict)
    """Percent of traffic per version."""
    replicas: dict[str, int] = field(default_factory=dict)
    """Replicas per version."""
    stable: str | None = None
    """The version serving by default."""
    history: list[str] = field(default_factory=list)
    """Actions applied, oldest first (``set_weight v2 10``, ``rollback v2``...)."""


class InMemoryCluster:
    """A cluster held in memory: the same interface, no API server."""

    def __init__(self, replicas: int = 2) -> None:
        self.agents: dict[str, Workloads] = {}
        self.default_replicas = replicas

    def _get(self, agent: str) -> Workloads:
        return self.agents.setdefault(agent, Workloads())

    async def set_weights(self, agent: str, weights: dict[str, float]) -> None:
        if abs(sum(weights.values()) - 100.0) > 1e-6 or any(w < 0 for w in weights.values()):
            raise ValueError(f"weights must be non-negative and sum to 100, got {weights}")
        w = self._get(agent)
        w.weights = dict(weights)
        for version, share in weights.items():
            if share > 0:
                w.replicas.setdefault(version, self.default_replicas)
        w.history.append("set_weights " + " ".join(f"{v}={p:g}" for v, p in sorted(weights.items())))

    async def rollback(self, agent: str, stable: str, canary: str, scale_to_zero: bool) -> None:
        w = self._get(agent)
        w.weights = {stable: 100.0, canary: 0.0}
        w.stable = stable
        if scale_to_zero:
            w.replicas[canary] = 0
        w.history.append(f"rollback {canary}")

    async def promote(self, agent: str, version: str) -> None:
        w = self._get(agent)
        old = w.stable
        w.weights = {version: 100.0} | ({old: 0.0} if old and old != version else {})
        w.stable = version
        w.history.append(f"promote {version}")

    def weights(self, agent: str) -> dict[str, float]:
        return dict(self._get(agent).weights)

    def canary_weight(self, agent: str, canary: str) -> float:
        """Percent of traffic the canary gets now (for a simulator routing by these weights)."""
        return self._get(agent).weights.get(canary, 0.0)
