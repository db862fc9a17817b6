"""The AgentRollout resources on the cluster, read as :class:`~controller.config.Rollout` settings.

:func:`list_rollouts` reads them (in one namespace or all); an invalid resource is skipped with its field
named in the log, never fatal. :class:`RolloutSource` re-reads them every ``interval`` seconds and hands
the engine what changed: a new canary version starts a new analysis, a removed resource stops being acted
on. Re-listing (not a watch) keeps this correct across API server restarts with no resourceVersion
bookkeeping; a rollout's settings reach the engine within one interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kubernetes

from controller.actuators.kubernetes.api import AGENTROLLOUT
from controller.actuators.kubernetes.errors import KubeError, translate
from controller.config import ConfigError, Rollout, parse_rollout

__all__ = ["RolloutSource", "list_rollouts"]

log = logging.getLogger("vigil.rollouts")


def _list_blocking(client: kubernetes.client.ApiClient, namespace: str | None) -> list[dict[str, Any]]:
    api = kubernetes.client.CustomObjectsApi(client)
    group, version, plural = AGENTROLLOUT
    out: object
    try:
        if namespace:
            out = api.list_namespaced_custom_object(group, version, namespace, plural, _request_timeout=30)
        else:
            out = api.list_cluster_custom_object(group, version, plural, _request_timeout=30)
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc
    return list(out.get("items") or []) if isinstance(out, dict) else []


async def list_rollouts(client: kubernetes.client.ApiClient, namespace: str | None = None) -> list[Rollout]:
    """Every valid AgentRollout (in ``namespace``, or in all namespaces)."""
    items = await asyncio.to_thread(_list_blocking, client, namespace)
    out: list[Rollout] = []
    seen: dict[str, str] = {}
    for doc in items:
        meta = doc.get("metadata") or {}
        where = f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"
        try:
            r = parse_rollout(doc, where)
        except ConfigError as exc:
            log.error("ignoring AgentRollout %s: %s", where, exc)
            continue
        assert r.agent is not None
        if r.agent in seen:
            log.error("ignoring AgentRollout %s: agent %r already has the rollout %s", where, r.agent, seen[r.agent])
            continue
        seen[r.agent] = where
        out.append(r)
    return out


class RolloutSource:
    """Keeps ``on_change`` fed with the cluster's AgentRollouts (plus any given from files)."""

    def __init__(self, client: kubernetes.client.ApiClient, on_change: Callable[[list[Rollout]], Any],
                 namespace: str | None = None, static: list[Rollout] | None = None, interval: float = 10.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.client = client
        self.on_change = on_change
        self.namespace = namespace
        self.static = list(static or [])
        self.interval = interval
        self.sleep = sleep
        self.current: list[Rollout] = list(self.static)

    async def refresh(self) -> bool:
        """Read the rollouts once; True when they changed (``on_change`` was called)."""
        found = await list_rollouts(self.client, self.namespace)
        files = {r.agent for r in self.static}
        merged = self.static + [r for r in found if r.agent not in files]  # a file given explicitly wins
        if merged == self.current:
            return False
        self.current = merged
        self.on_change(merged)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except KubeError as exc:  # keep the last known rollouts; the API server may be restarting
                log.warning("could not list AgentRollouts: %s", exc)
            waiting = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiting, asyncio.ensure_future(self.sleep(self.interval))},
                               return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
