"""What vigil writes back to Kubernetes about a decision: the AgentRollout's status and an Event.

Pure functions from a decision (and what the backend knows of its rollback) to JSON; the backend sends
them. Only numbers, names and the decision's own reason go out: never the conversations behind the evidence
(a Decision's ``examples`` stay out of the cluster).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from controller.actuators.kubernetes.api import AGENTROLLOUT
from controller.actuators.kubernetes.target import KubeTarget
from controller.contracts.decisions import Decision, Evidence

__all__ = ["CONDITION_TYPES", "RollbackState", "build_status", "conditions", "event_body", "evidence_json",
           "event_reason", "rfc3339"]

CONDITION_TYPES = ("Progressing", "Healthy", "RolledBack", "Paused")
PHASES = {"set_weight": "Progressing", "rollback": "RolledBack", "promote": "Promoted", "pause": "Paused"}
MAX_EVIDENCE = 20
"""Evidence entries kept in the status: enough to explain a decision, bounded so the object stays small."""
MAX_MESSAGE = 1024

RollbackPhase = Literal["Pending", "Applied", "Failed"]


@dataclass
class RollbackState:
    """Where the rollback of one canary stands, as ``status.rollback`` reports it."""

    version: str
    """The canary version being rolled back."""
    state: RollbackPhase = "Pending"
    """Pending until every write landed (then Applied); Failed on an error retrying cannot fix."""
    attempts: int = 0
    """Times the backend tried to carry the rollback out (each try retries its own writes a few times)."""
    message: str = ""
    """The last error, or what was done."""

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "attempts": self.attempts, "message": self.message[:MAX_MESSAGE]}


def rfc3339(t: float) -> str:
    """Seconds since the epoch as a Kubernetes timestamp (RFC 3339, UTC, whole seconds).

    >>> rfc3339(0.0)
    '1970-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float | int | None) -> float | int | None:
    # JSON has no NaN or infinity; an absent field says "no value" better than a string would
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def evidence_json(ev: Evidence) -> dict[str, Any]:
    """One piece of evidence as the status carries it (camelCase; non-finite numbers left out)."""
    fields = {"metric": ev.metric, "detector": ev.detector, "statistic": _number(ev.statistic),
              "threshold": _number(ev.threshold), "pValue": _number(ev.p_value), "nCanary": ev.n_canary,
              "nStable": ev.n_stable, "canaryValue": _number(ev.canary_value),
              "stableValue": _number(ev.stable_value)}
    return {k: v for k, v in fields.items() if v is not None}


def _last_decision(decision: Decision) -> dict[str, Any]:
    return {"time": decision.time, "action": decision.action, "version": decision.version,
            "reason": decision.reason[:MAX_MESSAGE], "weights": dict(decision.weights),
            "evidence": [evidence_json(ev) for ev in decision.evidence[:MAX_EVIDENCE]]}


Cond = tuple[str, str, str]
"""(status, reason, message) of one condition."""


def _wanted(decision: Decision, prev: dict[str, dict[str, Any]], rollback: RollbackState | None,
            new_version: bool) -> dict[str, Cond]:
    a, msg, v = decision.action, decision.reason, decision.version

    def keep(kind: str, default: Cond) -> Cond:
        c = prev.get(kind)
        return (c["status"], c.get("reason", ""), c.get("message", "")) if c and not new_version else default

    if a == "set_weight":
        progressing: Cond = ("True", "WeightSet", msg)
    elif a == "pause":
        progressing = ("True", "RolloutPaused", msg)
    elif a == "rollback":
        progressing = ("False", "RolloutAborted", msg)
    elif a == "promote":
        progressing = ("False", "RolloutCompleted", msg)
    else:  # an alert changes nothing about progress
        progressing = keep("Progressing", ("True", "RolloutProgressing", f"canary {v} under analysis"))

    if a == "rollback":
        healthy: Cond = ("False", "CanaryWorse", msg)
    elif a == "alert":
        healthy = ("False", "CanaryAlert", msg)
    else:  # an alert on this canary stands until it is replaced: later steps do not make it go away
        ok: Cond = ("True", "NoHarmDetected", f"no harmful difference found for canary {v}")
        was = keep("Healthy", ok)
        healthy = was if was[0] == "False" else ok

    if a == "rollback":
        state = rollback.state if rollback is not None else "Pending"  # not seen landing: not claimed
        note = rollback.message if rollback is not None and rollback.message else msg
        rolled_back: Cond = {"Applied": ("True", "RolledBack", msg),
                             "Pending": ("Unknown", "RollbackPending", note),
                             "Failed": ("False", "RollbackFailed", note)}[state]
    elif a == "alert":
        rolled_back = keep("RolledBack", ("False", "NotRolledBack", ""))
    else:
        rolled_back = ("False", "NotRolledBack", "")

    if a == "pause":
        paused: Cond = ("True", "Paused", msg)
    elif a == "alert":
        paused = keep("Paused", ("False", "NotPaused", ""))
    else:
        paused = ("False", "NotPaused", "")
    return {"Progressing": progressing, "Healthy": healthy, "RolledBack": rolled_back, "Paused": paused}


def conditions(decision: Decision, previous: list[dict[str, Any]], rollback: RollbackState | None,
               generation: int | None, now: str, new_version: bool = False) -> list[dict[str, Any]]:
    """vigil's four conditions after ``decision``, then any other type found (someone else's, kept as it
    is). A condition's ``lastTransitionTime`` only moves when its status does (the Kubernetes convention:
    it says since when the condition has been what it is)."""
    prev = {c.get("type", ""): c for c in previous if isinstance(c, dict)}
    out = []
    for kind, (status, reason, message) in _wanted(decision, prev, rollback, new_version).items():
        before = prev.get(kind)
        since = before.get("lastTransitionTime") if before and before.get("status") == status else None
        cond: dict[str, Any] = {"type": kind, "status": status, "reason": reason, "message": message[:MAX_MESSAGE],
                                "lastTransitionTime": since or now}
        if generation is not None:
            cond["observedGeneration"] = generation
        out.append(cond)
    return out + [c for c in previous if isinstance(c, dict) and c.get("type") not in CONDITION_TYPES]


def build_status(decision: Decision, current: dict[str, Any], generation: int | None,
                 weights: tuple[float, float] | None, rollback: RollbackState | None, now: str) -> dict[str, Any]:
    """The whole status after ``decision``, from the ``current`` one: fields vigil does not own are kept.

    ``weights`` are (stable, canary) as in force on the cluster, None when unknown (left as they were).
    """
    last = current.get("lastDecision") or {}
    new_version = bool(last) and last.get("version") != decision.version
    status = dict(current)
    status["phase"] = PHASES.get(decision.action) or current.get("phase") or "Progressing"
    if generation is not None:
        status["observedGeneration"] = generation
    if weights is not None:
        status["stableWeight"], status["canaryWeight"] = weights
    status["conditions"] = conditions(decision, list(current.get("conditions") or []), rollback, generation, now,
                                      new_version)
    status["lastDecision"] = _last_decision(decision)
    if decision.action == "rollback" and rollback is not None:
        status["rollback"] = rollback.to_json()
        # the rollback policy's memory (spec.rollback.maxActions, cooldown), kept where a new leader finds it;
        # a decision carried out again (after a failover) is counted once
        if rollback.state == "Applied" and current.get("lastRollbackTime") != decision.time:
            status["rollbacksApplied"] = int(current.get("rollbacksApplied") or 0) + 1
            status["lastRollbackTime"] = decision.time
    elif new_version:
        status.pop("rollback", None)  # it was about another canary
    return status


_REASONS = {"set_weight": "WeightSet", "promote": "Promoted", "alert": "Alert", "pause": "Paused"}
_FAILED = {"set_weight": "WeightSetFailed", "promote": "PromoteFailed", "pause": "PauseFailed",
           "alert": "AlertFailed"}


def event_reason(decision: Decision, rollback: RollbackState | None, error: str | None) -> tuple[str, str, str]:
    """(reason, type, message) of the Event for ``decision``: Warning for a rollback, an alert or a failure."""
    msg = decision.reason
    if decision.action == "rollback":
        state = rollback.state if rollback is not None else "Pending"
        detail = error or (rollback.message if rollback is not None else "")
        if state == "Applied":
            return "RolledBack", "Warning", msg
        reason = "RollbackPending" if state == "Pending" else "RollbackFailed"
        return reason, "Warning", f"{msg} (not applied yet: {detail})" if detail else msg
    if error:
        return _FAILED[decision.action], "Warning", f"{msg} (not applied: {error})"
    return _REASONS[decision.action], "Warning" if decision.action == "alert" else "Normal", msg


def event_body(decision: Decision, target: KubeTarget, uid: str | None, rollback: RollbackState | None,
               error: str | None, name: str, now: str, instance: str) -> dict[str, Any]:
    """A core/v1 Event on the AgentRollout for ``decision``."""
    reason, kind, message = event_reason(decision, rollback, error)
    group, version, _ = AGENTROLLOUT
    involved: dict[str, Any] = {"apiVersion": f"{group}/{version}", "kind": "AgentRollout", "name": target.name,
                                "namespace": target.namespace}
    if uid:
        involved["uid"] = uid
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": target.namespace},
            "involvedObject": involved, "reason": reason, "type": kind, "message": message[:MAX_MESSAGE],
            "count": 1, "firstTimestamp": now, "lastTimestamp": now, "reportingComponent": "vigil",
            "reportingInstance": instance, "source": {"component": "vigil"}}
