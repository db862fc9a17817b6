"""The few API calls the backend makes, on the official (blocking) client, off the event loop.

Every call runs in a worker thread (``asyncio.to_thread``) so the controller's loop keeps reading events
while the API server answers. Objects travel as the server's own JSON (camelCase dicts, read with
``_preload_content=False``) rather than the client's models: a model drops the fields it does not know, and
a pod template round-tripped through one could lose them, which matters when a rollback writes a template
back. Errors come out as :mod:`controller.actuators.kubernetes.errors`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import kubernetes

from controller.actuators.kubernetes.errors import translate

__all__ = ["AGENTROLLOUT", "MERGE_PATCH", "ApiClient", "KubeApi", "Obj", "Timeout", "api_client", "with_version"]

MERGE_PATCH = "application/merge-patch+json"
AGENTROLLOUT = ("vigil.dev", "v1alpha1", "agentrollouts")
"""Group, version and plural of the AgentRollout custom resource."""

Obj = dict[str, Any]
ApiClient = kubernetes.client.ApiClient
Timeout = float | tuple[float, float]


def api_client(api_url: str | None = None, kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """A client for a plain API URL (tests and local emulators), else a kubeconfig file, else the in-cluster
    service account."""
    if api_url:
        cfg = kubernetes.client.Configuration()
        cfg.host = api_url
        return kubernetes.client.ApiClient(cfg)
    if kubeconfig:
        client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig)
        return client
    kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient()


def with_version(obj: Obj, patch: Obj) -> Obj:
    """``patch`` with the object's ``metadata.resourceVersion``: the server refuses it (409) if the object
    changed since ``obj`` was read, so a read-modify-write never overwrites someone else's change."""
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    if rv is None:
        return patch
    meta = dict(patch.get("metadata") or {})
    meta["resourceVersion"] = rv
    return {**patch, "metadata": meta}


class KubeApi:
    """Deployments, ReplicaSets, custom objects, Events and (for webhook tokens) Secrets, as dicts, through one
    ``ApiClient``."""

    def __init__(self, client: kubernetes.client.ApiClient, request_timeout: Timeout = (5.0, 30.0),
                 field_manager: str = "vigil") -> None:
        self.apps = kubernetes.client.AppsV1Api(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.request_timeout = request_timeout
        self.field_manager = field_manager

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        def blocking() -> Obj:
            resp = fn(*args, _preload_content=False, _request_timeout=self.request_timeout, **kwargs)
            try:
                data = resp.data
            finally:
                resp.release_conn()
            out = json.loads(data) if data else {}
            return out if isinstance(out, dict) else {"items": out}

        try:
            return await asyncio.to_thread(blocking)
        except Exception as exc:  # ours come out typed; anything else (a bug) as it is
            err = translate(exc)
            if err is None:
                raise
            raise err from exc

    async def get_deployment(self, namespace: str, name: str) -> Obj:
        return await self._call(self.apps.read_namespaced_deployment, name, namespace)

    async def patch_deployment(self, namespace: str, name: str, patch: Obj) -> Obj:
        return await self._call(self.apps.patch_namespaced_deployment, name, namespace, patch,
                                _content_type=MERGE_PATCH, field_manager=self.field_manager)

    async def list_replica_sets(self, namespace: str) -> list[Obj]:
        # no label selector: ownership is decided by ownerReferences, which is exact (a selector is not)
        return list((await self._call(self.apps.list_namespaced_replica_set, namespace)).get("items") or [])

    async def get_custom(self, group: str, version: str, plural: str, namespace: str, name: str) -> Obj:
        return await self._call(self.custom.get_namespaced_custom_object, group, version, namespace, plural, name)

    async def patch_custom(self, group: str, version: str, plural: str, namespace: str, name: str, patch: Obj,
                           status: bool = False) -> Obj:
        fn = (self.custom.patch_namespaced_custom_object_status if status
              else self.custom.patch_namespaced_custom_object)
        return await self._call(fn, group, version, namespace, plural, name, patch,
                                _content_type=MERGE_PATCH, field_manager=self.field_manager)

    async def create_event(self, namespace: str, event: Obj) -> Obj:
        return await self._call(self.core.create_namespaced_event, namespace, event,
                                field_manager=self.field_manager)

    async def get_secret(self, namespace: str, name: str) -> Obj:
        """A Secret as the server sends it (``data`` values base64-encoded); needs ``get`` on ``secrets``."""
        return await self._call(self.core.read_namespaced_secret, name, namespace)
