"""Where one rollout lives on the cluster: everything the Kubernetes backend needs to know of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["KubeTarget", "RouterKind"]

RouterKind = Literal["gatewayAPI", "istio", "replicas", "none"]


@dataclass(frozen=True)
class KubeTarget:
    namespace: str
    """Namespace of the AgentRollout and of everything it routes."""
    name: str
    """``metadata.name`` of the AgentRollout (its status and Events are written there)."""
    agent: str
    """The agent (``data.agent`` of the events); the key the backend is called with."""
    stable_version: str
    """The version serving by default."""
    canary_version: str
    """The version under watch."""
    stable_deployment: str | None = None
    """Deployment running the stable version."""
    canary_deployment: str | None = None
    """Deployment running the canary; the same name as ``stable_deployment`` when the canary was rolled out in
    place on one Deployment (a rollback then restores the previous ReplicaSet's pod template)."""
    stable_service: str | None = None
    """Service in front of the stable pods; defaults to ``stable_deployment``."""
    canary_service: str | None = None
    """Service in front of the canary pods; defaults to ``canary_deployment``."""
    router: RouterKind = "none"
    """How traffic is split: a Gateway API HTTPRoute, an Istio VirtualService, the ratio of the two
    Deployments' replicas behind one Service, or not at all."""
    route_name: str | None = None
    """Name of the HTTPRoute or VirtualService (``gatewayAPI`` and ``istio``)."""
    istio_route: str | None = None
    """Name of the http route inside the VirtualService to weigh; default: every http route that has both
    destinations."""
    total_replicas: int | None = None
    """Replicas split between the two Deployments by the ``replicas`` router; default: their current total
    when the router first acts."""
    scale_canary_to_zero: bool = True
    """After a rollback, scale the canary Deployment to zero (True) or keep it warm with no traffic."""

    def __post_init__(self) -> None:
        # frozen: fill the defaults that depend on other fields the only way a frozen dataclass allows
        if self.stable_service is None:
            object.__setattr__(self, "stable_service", self.stable_deployment)
        if self.canary_service is None:
            object.__setattr__(self, "canary_service", self.canary_deployment)
        where = f"rollout {self.namespace}/{self.name}"
        if self.router not in get_args(RouterKind):
            raise ValueError(f"{where}: router must be one of {', '.join(get_args(RouterKind))}, got {self.router!r}")
        if self.stable_version == self.canary_version:
            raise ValueError(f"{where}: the stable and canary versions are both {self.stable_version!r}")
        if self.router in ("gatewayAPI", "istio"):
            if not self.route_name:
                raise ValueError(f"{where}: router {self.router} needs route_name")
            if not self.stable_service or not self.canary_service:
                raise ValueError(f"{where}: router {self.router} needs both services (or deployments)")
            if self.router == "gatewayAPI" and self.stable_service == self.canary_service:
                raise ValueError(f"{where}: an HTTPRoute splits traffic between two services; both are "
                                 f"{self.stable_service!r}")
        if self.router == "replicas":
            if not self.stable_deployment or not self.canary_deployment or self.in_place:
                raise ValueError(f"{where}: router replicas needs two different Deployments")
            if self.total_replicas is not None and self.total_replicas < 1:
                raise ValueError(f"{where}: total_replicas must be at least 1, got {self.total_replicas}")

    @property
    def in_place(self) -> bool:
        """Whether the canary replaced the stable version in place, on one Deployment."""
        return self.stable_deployment is not None and self.stable_deployment == self.canary_deployment

    @property
    def rollout_ref(self) -> str:
        return f"{self.namespace}/{self.name}"
