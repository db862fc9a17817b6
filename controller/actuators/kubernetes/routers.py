"""Traffic routers: how a stable/canary split is written to the cluster.

Every write reads the object, changes only the weights, and sends a JSON merge patch carrying the
``resourceVersion`` it read: if anyone wrote in between, the server answers 409 and the retry re-reads and
re-applies on the fresh version, so the other writer's change survives. The two weights of one route always
change in the same write, so a route is never seen half-updated. A write that would change nothing is
skipped, which makes repeating a decision (after a restart, or a retried rollback) cost one read.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Protocol, runtime_checkable

from controller.actuators.kubernetes.api import KubeApi, Obj, with_version
from controller.actuators.kubernetes.errors import PermanentError
from controller.actuators.kubernetes.retry import Retrier
from controller.actuators.kubernetes.target import KubeTarget

__all__ = ["GatewayRouter", "IstioRouter", "NoRouter", "ReplicaRouter", "TrafficRouter", "make_router",
           "replica_split", "split_percent"]

HTTPROUTE = ("gateway.networking.k8s.io", "v1", "httproutes")
VIRTUALSERVICE = ("networking.istio.io", "v1", "virtualservices")


@runtime_checkable
class TrafficRouter(Protocol):
    async def set_weights(self, stable_pct: float, canary_pct: float) -> None:
        """Send ``stable_pct`` percent of traffic to the stable version and ``canary_pct`` to the canary."""

    async def weights(self) -> dict[str, float]:
        """The split in force on the cluster, in percent, keyed by version."""


def split_percent(stable_pct: float, canary_pct: float) -> tuple[int, int]:
    """Whole percents summing to 100 (routes take integer weights), the canary's rounded half up.

    >>> split_percent(90.0, 10.0), split_percent(99.5, 0.5), split_percent(100, 0)
    ((90, 10), (99, 1), (100, 0))
    """
    if stable_pct < 0 or canary_pct < 0 or abs(stable_pct + canary_pct - 100.0) > 1e-6:
        raise PermanentError(f"weights must be non-negative and sum to 100, got {stable_pct}/{canary_pct}")
    canary = min(100, math.floor(canary_pct + 0.5))
    return 100 - canary, canary


def _percents(target: KubeTarget, stable: float, canary: float) -> dict[str, float]:
    total = stable + canary
    if total <= 0:
        return {target.stable_version: 0.0, target.canary_version: 0.0}
    return {target.stable_version: 100.0 * stable / total, target.canary_version: 100.0 * canary / total}


class _RouteRouter:
    """A route object (HTTPRoute or VirtualService) holding the two weights: read, reweigh, merge-patch."""

    resource: tuple[str, str, str]
    kind: str
    _default_weight = 0
    """The weight of a holder that has none."""

    def __init__(self, api: KubeApi, target: KubeTarget, retry: Retrier) -> None:
        assert target.route_name is not None  # KubeTarget checks it for these routers
        self.api, self.target, self.retry = api, target, retry
        self.route_name = target.route_name

    def _pairs(self, spec: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The (stable, canary) weight holders in ``spec``, as mutable references into it."""
        raise NotImplementedError

    def _spec_patch(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The part of the reweighed spec to send (a merge patch replaces lists whole)."""
        raise NotImplementedError

    def _where(self) -> str:
        return f"{self.kind} {self.target.namespace}/{self.route_name}"

    async def _read(self) -> Obj:
        return await self.api.get_custom(*self.resource, self.target.namespace, self.route_name)

    def _found_pairs(self, spec: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        pairs = self._pairs(spec)
        if not pairs:
            t = self.target
            raise PermanentError(f"{self._where()} has no route to both {t.stable_service} ({t.stable_version}) "
                                 f"and {t.canary_service} ({t.canary_version})")
        return pairs

    async def set_weights(self, stable_pct: float, canary_pct: float) -> None:
        stable, canary = split_percent(stable_pct, canary_pct)

        async def attempt() -> None:
            obj = await self._read()
            spec = copy.deepcopy(obj.get("spec") or {})
            changed = False
            for pair in self._found_pairs(spec):
                for holder, weight in zip(pair, (stable, canary), strict=True):
                    if holder.get("weight") != weight:
                        holder["weight"] = weight
                        changed = True
            if changed:
                await self.api.patch_custom(*self.resource, self.target.namespace, self.route_name,
                                            with_version(obj, {"spec": self._spec_patch(spec)}))

        await self.retry(attempt)

    async def weights(self) -> dict[str, float]:
        obj = await self.retry(self._read)
        stable, canary = self._found_pairs(obj.get("spec") or {})[0]
        return _percents(self.target, float(stable.get("weight", self._default_weight)),
                         float(canary.get("weight", self._default_weight)))


class GatewayRouter(_RouteRouter):
    """Gateway API ``HTTPRoute``: the ``weight`` of the two services' ``backendRefs`` in every rule having both."""

    resource = HTTPROUTE
    kind = "HTTPRoute"
    _default_weight = 1  # the Gateway API's default for a backendRef with no weight

    def _is(self, ref: dict[str, Any], service: str | None) -> bool:
        return (ref.get("name") == service and ref.get("kind", "Service") == "Service"
                and ref.get("group", "") == ""
                and ref.get("namespace", self.target.namespace) == self.target.namespace)

    def _pairs(self, spec: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        out = []
        for rule in spec.get("rules") or []:
            refs = rule.get("backendRefs") or []
            stable = next((r for r in refs if self._is(r, self.target.stable_service)), None)
            canary = next((r for r in refs if self._is(r, self.target.canary_service)), None)
            if stable is not None and canary is not None:
                out.append((stable, canary))
        return out

    def _spec_patch(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"rules": spec.get("rules")}


class IstioRouter(_RouteRouter):
    """Istio ``VirtualService``: ``spec.http[].route[].weight`` of the destinations of the two services.

    A destination belongs to a side when its ``host`` is that side's Service (short name or FQDN in the
    namespace) and its ``subset``, if any, is that side's version; with one Service for both versions the
    subset is required to tell them apart.
    """

    resource = VIRTUALSERVICE
    kind = "VirtualService"

    def _is(self, dest: dict[str, Any], service: str | None, version: str) -> bool:
        host = str(dest.get("host", ""))
        ns = self.target.namespace
        if service is None or not (host == service or host == f"{service}.{ns}" or host.startswith(f"{service}.{ns}.")):
            return False
        subset = dest.get("subset")
        if self.target.stable_service == self.target.canary_service:
            return bool(subset == version)
        return subset is None or subset == version

    def _pairs(self, spec: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        t = self.target
        out = []
        for http in spec.get("http") or []:
            if t.istio_route is not None and http.get("name") != t.istio_route:
                continue
            routes = http.get("route") or []
            stable = next((r for r in routes if self._is(r.get("destination") or {}, t.stable_service,
                                                            t.stable_version)), None)
            canary = next((r for r in routes if r is not stable and self._is(r.get("destination") or {},
                                                                              t.canary_service, t.canary_version)),
                          None)
            if stable is not None and canary is not None:
                out.append((stable, canary))
        return out

    def _where(self) -> str:
        route = f" (http route {self.target.istio_route!r})" if self.target.istio_route else ""
        return super()._where() + route

    def _spec_patch(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"http": spec.get("http")}


def replica_split(total: int, stable_pct: float, canary_pct: float) -> tuple[int, int]:
    """Replicas (stable, canary) for a split of ``total``: proportional, rounded half up, and at least one
    for a side with any traffic (which may take one more than ``total``).

    >>> replica_split(10, 90, 10), replica_split(4, 99, 1), replica_split(4, 100, 0), replica_split(1, 50, 50)
    ((9, 1), (3, 1), (4, 0), (1, 1))
    """
    if canary_pct <= 0:
        return total, 0
    if stable_pct <= 0:
        return 0, total
    if total < 2:
        return 1, 1
    canary = min(total - 1, max(1, math.floor(total * canary_pct / 100.0 + 0.5)))
    return total - canary, canary


def _replicas(deployment: Obj) -> int:
    value = (deployment.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)  # the API server's default when unset


class ReplicaRouter:
    """No mesh: both Deployments sit behind one Service, and the traffic split is their replica ratio.

    The side gaining traffic is scaled up before the other is scaled down, so serving capacity never dips
    below either the old or the new size. The total is ``total_replicas``, or else the two Deployments'
    total the first time this router acts (kept from then on, so that a split interrupted between its
    scale-up and its scale-down does not grow the total on the next try).
    """

    def __init__(self, api: KubeApi, target: KubeTarget, retry: Retrier) -> None:
        assert target.stable_deployment is not None and target.canary_deployment is not None
        self.api, self.target, self.retry = api, target, retry
        self.stable, self.canary = target.stable_deployment, target.canary_deployment
        self.total = target.total_replicas

    async def _read_both(self) -> tuple[Obj, Obj]:
        ns = self.target.namespace
        return await self.api.get_deployment(ns, self.stable), await self.api.get_deployment(ns, self.canary)

    async def scale(self, name: str, replicas: int) -> None:
        """Set ``name``'s replicas (read, then a merge patch guarded by the version read; retried)."""
        await scale_deployment(self.api, self.retry, self.target.namespace, name, replicas)

    async def set_weights(self, stable_pct: float, canary_pct: float) -> None:
        split_percent(stable_pct, canary_pct)  # validates
        stable_dep, canary_dep = await self.retry(self._read_both)
        now = {self.stable: _replicas(stable_dep), self.canary: _replicas(canary_dep)}
        if self.total is None:
            total = now[self.stable] + now[self.canary]
            if total < 1:
                raise PermanentError(f"Deployments {self.target.namespace}/{self.stable} and {self.canary} have no "
                                     "replicas to split; set total_replicas")
            self.total = total
        stable_n, canary_n = replica_split(self.total, stable_pct, canary_pct)
        want = {self.stable: stable_n, self.canary: canary_n}
        ups = [name for name in want if want[name] > now[name]]
        downs = [name for name in want if want[name] < now[name]]
        for name in ups + downs:
            await self.scale(name, want[name])

    async def weights(self) -> dict[str, float]:
        stable_dep, canary_dep = await self.retry(self._read_both)
        return _percents(self.target, _replicas(stable_dep), _replicas(canary_dep))


async def scale_deployment(api: KubeApi, retry: Retrier, namespace: str, name: str, replicas: int) -> None:
    """Set a Deployment's ``spec.replicas`` with a version-guarded merge patch, retried; no write if it is
    already there."""

    async def attempt() -> None:
        dep = await api.get_deployment(namespace, name)
        if _replicas(dep) != replicas:
            await api.patch_deployment(namespace, name, with_version(dep, {"spec": {"replicas": replicas}}))

    await retry(attempt)


class NoRouter:
    """No traffic control on the cluster (an in-place rollout, or routing done elsewhere): the split is
    only remembered."""

    def __init__(self, target: KubeTarget) -> None:
        self.split = {target.stable_version: 100.0, target.canary_version: 0.0}
        self.target = target

    async def set_weights(self, stable_pct: float, canary_pct: float) -> None:
        split_percent(stable_pct, canary_pct)  # validates
        self.split = {self.target.stable_version: float(stable_pct), self.target.canary_version: float(canary_pct)}

    async def weights(self) -> dict[str, float]:
        return dict(self.split)


def make_router(api: KubeApi, target: KubeTarget, retry: Retrier) -> TrafficRouter:
    """The router ``target.router`` names."""
    if target.router == "gatewayAPI":
        return GatewayRouter(api, target, retry)
    if target.router == "istio":
        return IstioRouter(api, target, retry)
    if target.router == "replicas":
        return ReplicaRouter(api, target, retry)
    return NoRouter(target)
