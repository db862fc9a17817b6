"""Rollback on the cluster: all traffic back to stable, then the canary's pods dealt with.

Two Deployments: the weights go to 100/0 through the router first (users stop seeing the canary at once),
then the canary Deployment is scaled to zero or kept warm. One Deployment updated in place: after the
weights, its previous pod template is restored the way ``kubectl rollout undo`` does it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from controller.actuators.kubernetes.api import KubeApi, Obj, with_version
from controller.actuators.kubernetes.errors import PermanentError
from controller.actuators.kubernetes.retry import Retrier
from controller.actuators.kubernetes.routers import TrafficRouter, scale_deployment
from controller.actuators.kubernetes.target import KubeTarget

__all__ = ["HASH_LABEL", "REVISION", "ROLLED_BACK_TO", "merge_diff", "previous_template", "rollback",
           "undo_in_place"]

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
ROLLED_BACK_TO = "vigil.dev/rolled-back-to"
"""Annotation vigil leaves on a Deployment it undid: the ReplicaSet whose template it restored. A second
undo would flip back to the bad template (the restored ReplicaSet becomes the newest revision), so a
rollback that is repeated (retried, replayed after a restart) checks this first and stops if the template
is still that ReplicaSet's."""


def merge_diff(current: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns ``current`` into exactly ``target``: keys only ``current`` has
    are set to null, changed objects are diffed recursively, anything else changed is sent whole.

    >>> merge_diff({"a": 1, "b": {"c": 1, "d": 2}, "l": [1]}, {"b": {"c": 1, "d": 3}, "l": [1], "e": 5})
    {'a': None, 'b': {'d': 3}, 'e': 5}
    """
    patch: dict[str, Any] = {key: None for key in current if key not in target}
    for key, value in target.items():
        if key not in current:
            if value is not None:  # null in the target is absence, which the key already has
                patch[key] = copy.deepcopy(value)
        elif current[key] != value:
            both_objects = isinstance(current[key], Mapping) and isinstance(value, Mapping)
            patch[key] = merge_diff(current[key], value) if both_objects else copy.deepcopy(value)
    return patch


def _revision(obj: Obj) -> int | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _owned_by(rs: Obj, deployment: Obj) -> bool:
    meta = deployment.get("metadata") or {}
    for ref in (rs.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") != "Deployment":
            continue
        if ref.get("uid") and meta.get("uid"):
            if ref["uid"] == meta["uid"]:
                return True
        elif ref.get("name") == meta.get("name"):
            return True
    return False


def _template(rs: Obj) -> dict[str, Any]:
    """A ReplicaSet's pod template as its Deployment would carry it: without ``pod-template-hash``, a label
    the Deployment controller adds to the ReplicaSet only."""
    template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return template


def previous_template(deployment: Obj, replica_sets: list[Obj]) -> tuple[str, dict[str, Any]]:
    """The ReplicaSet to go back to (the owned one with the highest revision below the Deployment's own)
    and its template; a :class:`PermanentError` when there is none."""
    meta = deployment.get("metadata") or {}
    where = f"Deployment {meta.get('namespace')}/{meta.get('name')}"
    current = _revision(deployment)
    if current is None:
        raise PermanentError(f"{where} has no {REVISION} annotation: cannot tell its previous revision")
    older = [(rev, rs) for rs in replica_sets if _owned_by(rs, deployment)
             for rev in [_revision(rs)] if rev is not None and rev < current]
    if not older:
        raise PermanentError(f"{where} has no revision before {current} to roll back to "
                             "(no older ReplicaSet left; see spec.revisionHistoryLimit)")
    _, rs = max(older, key=lambda pair: pair[0])
    return str((rs.get("metadata") or {}).get("name")), _template(rs)


async def undo_in_place(api: KubeApi, retry: Retrier, namespace: str, name: str) -> None:
    """Restore the previous ReplicaSet's pod template on Deployment ``name``, as ``kubectl rollout undo``
    does; a no-op if this was already done (see :data:`ROLLED_BACK_TO`)."""

    async def attempt() -> None:
        dep = await api.get_deployment(namespace, name)
        current = (dep.get("spec") or {}).get("template") or {}
        owned = [rs for rs in await api.list_replica_sets(namespace) if _owned_by(rs, dep)]
        done = ((dep.get("metadata") or {}).get("annotations") or {}).get(ROLLED_BACK_TO)
        if done is not None and any((rs.get("metadata") or {}).get("name") == done and _template(rs) == current
                                    for rs in owned):
            return
        rs_name, template = previous_template(dep, owned)
        patch: dict[str, Any] = {"metadata": {"annotations": {ROLLED_BACK_TO: rs_name}}}
        diff = merge_diff(current, template)
        if diff:
            patch["spec"] = {"template": diff}
        await api.patch_deployment(namespace, name, with_version(dep, patch))

    await retry(attempt)


async def rollback(api: KubeApi, router: TrafficRouter, retry: Retrier, target: KubeTarget,
                   scale_to_zero: bool) -> None:
    """All traffic to stable, then the canary scaled to zero (or kept warm), or its Deployment undone.

    With the ``replicas`` router the canary's replicas are its traffic, so it ends at zero either way.
    """
    await router.set_weights(100.0, 0.0)
    if target.in_place:
        assert target.stable_deployment is not None
        await undo_in_place(api, retry, target.namespace, target.stable_deployment)
    elif scale_to_zero and target.canary_deployment is not None:
        await scale_deployment(api, retry, target.namespace, target.canary_deployment, 0)
