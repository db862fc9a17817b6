"""The Kubernetes cluster backend: :class:`~controller.actuators.protocol.ClusterBackend` on a real API server.

Decisions become weights on the rollout's router, rollbacks and promotions; :meth:`KubernetesCluster.record`
then reports each decision on the AgentRollout (its status and an Event). The official client blocks, so
every call runs in a worker thread (see :mod:`controller.actuators.kubernetes.api`).

A rollback is never left half-done without saying so: its writes are retried (a bounded number of times
per call); if they still fail, :meth:`KubernetesCluster.rollback` raises a :class:`TemporaryError` for the
caller to try again later, and the status reports the rollback ``Pending`` with the attempts so far and the
last error until a later call lands it (``Applied``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes

from controller.actuators.kubernetes.api import AGENTROLLOUT, KubeApi, Timeout, with_version
from controller.actuators.kubernetes.errors import (
    ConflictError,
    KubeError,
    NotFoundError,
    PermanentError,
    TemporaryError,
)
from controller.actuators.kubernetes.retry import KUBE, Retrier, RetryPolicy, Sleep
from controller.actuators.kubernetes.rollback import merge_diff, rollback
from controller.actuators.kubernetes.routers import TrafficRouter, make_router, split_percent
from controller.actuators.kubernetes.status import RollbackState, build_status, event_body, rfc3339
from controller.actuators.kubernetes.target import KubeTarget
from controller.actuators.protocol import apply_decision
from controller.contracts.decisions import Decision, seconds

__all__ = ["KubernetesCluster"]

log = logging.getLogger(__name__)


class KubernetesCluster:
    """Carries decisions out on Kubernetes, for the rollouts ``targets`` describes (agent -> target)."""

    def __init__(self, client: kubernetes.client.ApiClient,
                 targets: Mapping[str, KubeTarget] | Callable[[str], KubeTarget], *,
                 policy: RetryPolicy = KUBE, sleep: Sleep = asyncio.sleep,
                 request_timeout: Timeout = (5.0, 30.0), clock: Callable[[], float] = time.time,
                 instance: str | None = None, field_manager: str = "vigil") -> None:
        self.api = KubeApi(client, request_timeout, field_manager)
        self.retry = Retrier(policy, sleep)
        self._lookup: Callable[[str], KubeTarget] = (targets.__getitem__ if isinstance(targets, Mapping)
                                                     else targets)
        self.clock = clock
        self.instance = instance or socket.gethostname()
        self._routers: dict[str, tuple[KubeTarget, TrafficRouter]] = {}
        self._weights: dict[str, dict[str, float]] = {}
        self.rollbacks: dict[str, RollbackState] = {}
        """Where each agent's latest rollback stands."""

    @classmethod
    def in_cluster(cls, targets: Mapping[str, KubeTarget] | Callable[[str], KubeTarget],
                   **kwargs: Any) -> KubernetesCluster:
        """The backend as it runs in a pod: the service account's credentials."""
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        return cls(kubernetes.client.ApiClient(), targets, **kwargs)

    def target(self, agent: str) -> KubeTarget:
        try:
            return self._lookup(agent)
        except KeyError:
            raise PermanentError(f"no Kubernetes target is configured for agent {agent!r}") from None

    def router(self, target: KubeTarget) -> TrafficRouter:
        """The router of ``target`` (kept per agent: the replica router remembers its total)."""
        cached = self._routers.get(target.agent)
        if cached is None or cached[0] != target:  # a changed target (after a promotion) gets a fresh router
            cached = (target, make_router(self.api, target, self.retry))
            self._routers[target.agent] = cached
        return cached[1]

    def _split(self, target: KubeTarget, weights: dict[str, float]) -> tuple[float, float]:
        unknown = set(weights) - {target.stable_version, target.canary_version}
        if unknown:
            raise PermanentError(f"rollout {target.rollout_ref} routes {target.stable_version} and "
                                 f"{target.canary_version}, not {', '.join(sorted(unknown))}")
        canary = float(weights.get(target.canary_version, 0.0))
        stable = float(weights.get(target.stable_version, 100.0 - canary))
        split_percent(stable, canary)  # validates
        return stable, canary

    async def _route(self, target: KubeTarget, stable: float, canary: float) -> None:
        await self.router(target).set_weights(stable, canary)
        self._weights[target.agent] = {target.stable_version: stable, target.canary_version: canary}

    async def set_weights(self, agent: str, weights: dict[str, float]) -> None:
        target = self.target(agent)
        await self._route(target, *self._split(target, weights))

    async def rollback(self, agent: str, stable: str, canary: str, scale_to_zero: bool) -> None:
        target = self.target(agent)
        state = self.rollbacks.get(agent)
        if state is None or state.version != canary or state.state != "Pending":
            state = self.rollbacks[agent] = RollbackState(canary)
        state.attempts += 1
        try:
            if (stable, canary) != (target.stable_version, target.canary_version):
                # acting on objects configured for other versions would roll back the wrong thing
                raise PermanentError(f"rollback of {canary} to {stable} asked, but rollout {target.rollout_ref} "
                                     f"is {target.canary_version} over {target.stable_version}")
            await rollback(self.api, self.router(target), self.retry, target, scale_to_zero)
        except TemporaryError as exc:
            state.state, state.message = "Pending", exc.message
            log.warning("rollback of %s %s not applied yet (attempt %d): %s", agent, canary, state.attempts,
                        exc.message)
            raise
        except Exception as exc:
            state.state, state.message = "Failed", getattr(exc, "message", None) or repr(exc)
            raise
        self._weights[agent] = {stable: 100.0, canary: 0.0}
        state.state = "Applied"
        if target.in_place:
            state.message = (f"all traffic on {stable}; Deployment {target.stable_deployment} "
                             "back to its previous pod template")
        elif scale_to_zero and target.canary_deployment:
            state.message = f"all traffic on {stable}; Deployment {target.canary_deployment} scaled to zero"
        else:
            state.message = f"all traffic on {stable}; canary kept warm"

    async def promote(self, agent: str, version: str) -> None:
        target = self.target(agent)
        if version == target.canary_version:
            await self._route(target, 0.0, 100.0)
        elif version == target.stable_version:
            await self._route(target, 100.0, 0.0)
        else:
            raise PermanentError(f"cannot promote {version}: rollout {target.rollout_ref} routes "
                                 f"{target.stable_version} and {target.canary_version}")

    def weights(self, agent: str) -> dict[str, float]:
        """The weights vigil last set or read for ``agent`` (no API call: this one is synchronous; see
        :meth:`observed_weights`)."""
        return dict(self._weights.get(agent, {}))

    async def observed_weights(self, agent: str) -> dict[str, float]:
        """The weights in force on the cluster now, read from the router's objects."""
        target = self.target(agent)
        out = await self.router(target).weights()
        self._weights[agent] = dict(out)
        return out

    async def apply(self, decision: Decision) -> None:
        """Carry ``decision`` out, then :meth:`record` it (also when it failed, saying so); re-raises."""
        target = self.target(decision.agent)
        try:
            await apply_decision(self, decision, target.stable_version, target.scale_canary_to_zero)
        except KubeError as exc:
            try:
                await self.record(decision, target, error=exc.message)
            except KubeError as report:  # the action's error is the one the caller must see
                log.warning("could not report failed %s of %s: %s", decision.action, decision.agent, report)
            raise
        await self.record(decision, target)

    async def rollback_history(self, agent: str) -> tuple[int, float | None]:
        """Rollbacks carried out for ``agent``'s AgentRollout and the event time of the last one, from its
        status (what a new leader's rollback policy starts from); (0, None) without a resource."""
        target = self.target(agent)
        try:
            ar = await self.api.get_custom(*AGENTROLLOUT, target.namespace, target.name)
        except NotFoundError:
            return 0, None
        st = ar.get("status") or {}
        last = st.get("lastRollbackTime")
        when = seconds(str(last)) if last else None
        return int(st.get("rollbacksApplied") or 0), when

    async def record(self, decision: Decision, target: KubeTarget, error: str | None = None) -> None:
        """Report ``decision`` on the AgentRollout: its status (phase, weights, conditions, the decision and
        its evidence, the rollback's state) and a new Event. ``error``: why the decision was not carried out.

        Both are attempted; the first failure is raised after. A missing AgentRollout (rollouts configured
        outside the cluster) only skips the status.
        """
        now = rfc3339(self.clock())
        state = self.rollbacks.get(target.agent)
        if state is not None and state.version != decision.version:
            state = None
        failures: list[KubeError] = []
        uid: str | None = None
        try:
            uid = await self._write_status(decision, target, state, now)
        except KubeError as exc:
            failures.append(exc)
        try:
            await self._create_event(decision, target, uid, state, error, now)
        except KubeError as exc:
            failures.append(exc)
        if failures:
            raise failures[0]

    async def _write_status(self, decision: Decision, target: KubeTarget, state: RollbackState | None,
                            now: str) -> str | None:
        group, version, plural = AGENTROLLOUT
        known = self._weights.get(target.agent)
        weights = (known[target.stable_version], known[target.canary_version]) if known else None

        async def attempt() -> str | None:
            try:
                obj = await self.api.get_custom(group, version, plural, target.namespace, target.name)
            except NotFoundError:
                log.warning("AgentRollout %s not found: decision for %s not written to a status",
                            target.rollout_ref, target.agent)
                return None
            meta = obj.get("metadata") or {}
            current = obj.get("status") or {}
            wanted = build_status(decision, current, meta.get("generation"), weights, state, now)
            # the exact difference, nulls included, so that the status becomes exactly `wanted`
            patch = merge_diff(current, wanted)
            if patch:
                await self.api.patch_custom(group, version, plural, target.namespace, target.name,
                                            with_version(obj, {"status": patch}), status=True)
            uid = meta.get("uid")
            return str(uid) if uid else None

        return await self.retry(attempt)

    async def _create_event(self, decision: Decision, target: KubeTarget, uid: str | None,
                            state: RollbackState | None, error: str | None, now: str) -> None:
        # an explicit name: a retry after a lost answer then finds its own Event instead of adding a second
        name = f"{target.name}.{secrets.token_hex(8)}"
        body = event_body(decision, target, uid, state, error, name, now, self.instance)

        async def attempt() -> None:
            # 409 on a create: it already exists, i.e. an earlier try of this very Event landed
            with contextlib.suppress(ConflictError):
                await self.api.create_event(target.namespace, body)

        await self.retry(attempt)
