"""The ``AgentRollout`` resource (``vigil.dev/v1alpha1``): what ``vigil replay --config`` reads and the
Kubernetes custom resource holds. Settings are dataclasses, one documented line per field, and every
invalid value is refused with the path of its field (``spec.analysis.alpha: ...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.errors import VigilError
from controller.ingest.catalog import spec_for

__all__ = ["API_VERSION", "MAX_SEGMENTS_LIMIT", "NOTIFY_ACTIONS", "ROUTERS", "SEGMENT_DIMENSIONS", "Analysis",
           "ConfigError", "MetricOverride", "Notification", "RollbackPolicy", "Rollout", "SecretRef", "Step", "Traffic",
           "Workload", "load_rollouts", "parse_duration", "parse_rollout"]

API_VERSION = "vigil.dev/v1alpha1"
KIND = "AgentRollout"
#: What ``spec.analysis.segments`` may split the tests by (event fields ``channel`` and ``tenant``).
SEGMENT_DIMENSIONS = ("channel", "tenant")
#: The largest ``spec.analysis.maxSegments``: it bounds the state kept per rollout, so it is bounded itself.
MAX_SEGMENTS_LIMIT = 1000


class ConfigError(VigilError, ValueError):
    """An invalid configuration; the message starts with the path of the offending field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any, path: str) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"1h"`` or ``"250ms"``.

    >>> parse_duration("5m", "x"), parse_duration(1.5, "x")
    (300.0, 1.5)
    """
    if isinstance(value, bool):
        raise ConfigError(path, f"expected a duration like 30s or 5m, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ConfigError(path, f"expected a duration like 30s or 5m, got {value!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds < 0:
        raise ConfigError(path, f"must not be negative, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Workload:
    version: str
    """The agent version this side runs (matched against the events' ``version``)."""
    deployment: str | None = None
    """The Kubernetes Deployment serving it (the same on both sides: the version is rolled out in place)."""
    service: str | None = None
    """The Service in front of it (HTTPRoute backendRef or VirtualService host); default the Deployment's name."""


@dataclass(frozen=True)
class Step:
    set_weight: float | None = None
    """Percent of traffic to send to the canary at this step (``setWeight``)."""
    pause: float | None = None
    """Seconds of event time to hold before the next step (``pause: {duration}``)."""


@dataclass(frozen=True)
class MetricOverride:
    name: str
    """A catalog metric (``escalation_rate``, ``latency_ms``...) or ``eval:<name>``."""
    direction: str | None = None
    """``increase`` or ``decrease``: which way is harmful; the catalog's default when unset."""
    critical: bool = True
    """A critical metric rolls back on its own; a non-critical one only raises an alert."""
    min_samples: int | None = None
    """Canary observations needed before this metric may act; the analysis default when unset."""


@dataclass(frozen=True)
class Analysis:
    alpha: float = 0.01
    """Probability of rolling back a healthy canary over the whole rollout, split across the tests."""
    min_samples: int = 50
    """Canary observations a metric needs before it may roll back (it may still alert sooner)."""
    baseline_min_samples: int = 50
    """Stable observations of a value metric needed before its quantile thresholds are set."""
    bucket_seconds: int = 1
    """Width of the event-time buckets events are summarised into."""
    allowed_lateness: float = 5.0
    """Seconds of event time an event may trail the newest read before its bucket has closed (it is then late)."""
    idle_timeout: float = 60.0
    """Seconds of event time after which a source partition's last progress report no longer holds the watermark."""
    window: float = 60.0
    """Seconds of event time in the sliding window of ``/api/v1/agents`` and the demo."""
    metrics: tuple[MetricOverride, ...] = ()
    """Metrics to monitor; empty means every metric present in the events, with catalog defaults."""
    segments: tuple[str, ...] = ()
    """Dimensions (``channel``, ``tenant``) whose every value also gets its own test of each metric; empty: none."""
    max_segments: int = 20
    """Values of a segment dimension tested on their own; values seen after the first ones are pooled as ``other``."""


ROUTERS = ("gatewayAPI", "istio", "replicas", "none")
NOTIFY_ACTIONS = ("rollback", "alert", "promote", "set_weight")


@dataclass(frozen=True)
class Traffic:
    router: str = "none"
    """``gatewayAPI`` (HTTPRoute weights), ``istio`` (VirtualService weights), ``replicas`` or ``none``."""
    name: str | None = None
    """The HTTPRoute or VirtualService to weight, in the rollout's namespace (gatewayAPI and istio)."""
    route: str | None = None
    """Istio: the name of the http route to weight; default every route that has both destinations."""
    replicas: int | None = None
    """Replica ratio: the total replicas split between the two Deployments; default their current total."""


@dataclass(frozen=True)
class RollbackPolicy:
    scale_canary_to_zero: bool = True
    """On rollback, scale the canary to zero (true) or keep it warm with no traffic (false)."""
    cooldown: float = 300.0
    """Seconds after a rollback during which a new rollback of the same agent only alerts (no flapping)."""
    max_actions: int = 10
    """Rollbacks vigil may carry out for this resource; beyond, it alerts and marks the rollout Paused."""


@dataclass(frozen=True)
class SecretRef:
    name: str
    """A Secret in the rollout's namespace."""
    key: str
    """The key of the Secret holding the value."""


@dataclass(frozen=True)
class Notification:
    webhook: str
    """An http(s) URL that receives each decision as a JSON POST."""
    actions: tuple[str, ...] = ("rollback", "alert", "promote")
    """Which decisions to send: ``rollback``, ``alert``, ``promote``, ``set_weight``."""
    secret_ref: SecretRef | None = None
    """A bearer token for the webhook, from a Secret."""


@dataclass(frozen=True)
class Rollout:
    agent: str | None = None
    """The agent (``data.agent``); unset only in track mode, where every agent is watched."""
    stable: Workload | None = None
    """The running version; unset means: taken from events with ``track: stable``."""
    canary: Workload | None = None
    """The new version under watch; unset means: taken from events with ``track: canary``."""
    steps: tuple[Step, ...] = ()
    """Traffic steps; empty means watch only: roll back on harm, never promote."""
    analysis: Analysis = field(default_factory=Analysis)
    """How the canary is judged."""
    traffic: Traffic = field(default_factory=Traffic)
    """How traffic is split between the two versions on the cluster."""
    rollback: RollbackPolicy = field(default_factory=RollbackPolicy)
    """What a rollback does, and how often vigil may do it."""
    paused: bool = False
    """Hold the steps where they are (vigil still judges, and still rolls back on harm)."""
    notifications: tuple[Notification, ...] = ()
    """Where decisions are sent besides the resource's status, its Events and the decisions topic."""
    name: str | None = None
    """``metadata.name`` of the resource."""
    namespace: str | None = None
    """``metadata.namespace`` of the resource (where its Deployments and routes live)."""

    @property
    def scale_canary_to_zero(self) -> bool:
        return self.rollback.scale_canary_to_zero


def _expect(obj: Any, kind: type | tuple[type, ...], path: str) -> Any:
    if not isinstance(obj, kind) or isinstance(obj, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(path, f"expected {names}, got {type(obj).__name__} {obj!r}"[:200])
    return obj


def _unknown(obj: dict[str, Any], allowed: set[str], path: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ConfigError(f"{path}.{extra[0]}", f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _workload(obj: Any, path: str) -> Workload:
    _expect(obj, dict, path)
    _unknown(obj, {"version", "deployment", "service"}, path)
    version = _expect(obj.get("version"), str, f"{path}.version")
    if not version:
        raise ConfigError(f"{path}.version", "must not be empty")
    return Workload(version, _name(obj.get("deployment"), f"{path}.deployment"),
                    _name(obj.get("service"), f"{path}.service"))


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _name(obj: Any, path: str) -> str | None:
    """An optional Kubernetes object name (RFC 1123)."""
    if obj is None:
        return None
    v = _expect(obj, str, path)
    if len(v) > 253 or not _DNS_LABEL.match(v):
        raise ConfigError(path, f"not a valid Kubernetes name: {v!r}")
    return str(v)


def _traffic(obj: Any, path: str, stable: Workload, canary: Workload) -> Traffic:
    _expect(obj, dict, path)
    _unknown(obj, {"router", "name", "route", "replicas"}, path)
    router = _expect(obj.get("router", "none"), str, f"{path}.router")
    if router not in ROUTERS:
        raise ConfigError(f"{path}.router", f"must be one of {', '.join(ROUTERS)}, got {router!r}")
    name = _name(obj.get("name"), f"{path}.name")
    if router in ("gatewayAPI", "istio") and name is None:
        kind = "HTTPRoute" if router == "gatewayAPI" else "VirtualService"
        raise ConfigError(f"{path}.name", f"required with router {router} (the {kind} to weight)")
    route = obj.get("route")
    if route is not None:
        _expect(route, str, f"{path}.route")
        if router != "istio":
            raise ConfigError(f"{path}.route", "only the istio router has named http routes")
    replicas = obj.get("replicas")
    if replicas is not None:
        replicas = _positive_int(replicas, f"{path}.replicas")
        if router != "replicas":
            raise ConfigError(f"{path}.replicas", "only the replicas router splits a replica total")
    if router == "replicas":
        for side, w in (("stable", stable), ("canary", canary)):
            if w.deployment is None:
                raise ConfigError(f"{path}.router", f"replicas needs spec.{side}.deployment")
        if stable.deployment == canary.deployment:
            raise ConfigError(f"{path}.router", "replicas needs two Deployments; one Deployment is rolled out in "
                                                "place (use none, gatewayAPI or istio)")
    return Traffic(router, name, route, replicas)


def _rollback(obj: Any, path: str) -> RollbackPolicy:
    _expect(obj, dict, path)
    _unknown(obj, {"scaleCanaryToZero", "cooldown", "maxActions"}, path)
    kw: dict[str, Any] = {}
    if "scaleCanaryToZero" in obj:
        kw["scale_canary_to_zero"] = bool(_expect(obj["scaleCanaryToZero"], bool, f"{path}.scaleCanaryToZero"))
    if "cooldown" in obj:
        kw["cooldown"] = parse_duration(obj["cooldown"], f"{path}.cooldown")
    if "maxActions" in obj:
        kw["max_actions"] = _positive_int(obj["maxActions"], f"{path}.maxActions")
    return RollbackPolicy(**kw)


def _notifications(obj: Any, path: str) -> tuple[Notification, ...]:
    out = []
    for i, raw in enumerate(_expect(obj, list, path)):
        p = f"{path}[{i}]"
        _expect(raw, dict, p)
        _unknown(raw, {"webhook", "actions", "secretRef"}, p)
        url = _expect(raw.get("webhook"), str, f"{p}.webhook")
        if not re.match(r"^https?://[^\s/]+", url):
            raise ConfigError(f"{p}.webhook", f"must be an http or https URL, got {url!r}")
        actions: tuple[str, ...] = Notification.actions
        if "actions" in raw:
            acts = []
            for j, a in enumerate(_expect(raw["actions"], list, f"{p}.actions")):
                if a not in NOTIFY_ACTIONS:
                    raise ConfigError(f"{p}.actions[{j}]", f"must be one of {', '.join(NOTIFY_ACTIONS)}, got {a!r}")
                acts.append(a)
            actions = tuple(acts)
        ref = None
        if "secretRef" in raw:
            r = _expect(raw["secretRef"], dict, f"{p}.secretRef")
            _unknown(r, {"name", "key"}, f"{p}.secretRef")
            name = _name(r.get("name"), f"{p}.secretRef.name")
            key = _expect(r.get("key"), str, f"{p}.secretRef.key")
            if name is None or not key:
                raise ConfigError(f"{p}.secretRef", "needs a name and a key")
            ref = SecretRef(name, key)
        out.append(Notification(url, actions, ref))
    return tuple(out)


def _steps(obj: Any, path: str) -> tuple[Step, ...]:
    out = []
    for i, raw in enumerate(_expect(obj, list, path)):
        p = f"{path}[{i}]"
        _expect(raw, dict, p)
        _unknown(raw, {"setWeight", "pause"}, p)
        if len(raw) != 1:
            raise ConfigError(p, "a step is exactly one of setWeight or pause")
        if "setWeight" in raw:
            w = _expect(raw["setWeight"], (int, float), f"{p}.setWeight")
            if not 0 <= w <= 100:
                raise ConfigError(f"{p}.setWeight", f"must be between 0 and 100, got {w}")
            out.append(Step(set_weight=float(w)))
        else:
            pause = _expect(raw["pause"], dict, f"{p}.pause")
            _unknown(pause, {"duration"}, f"{p}.pause")
            if "duration" not in pause:
                raise ConfigError(f"{p}.pause.duration", "required (an indefinite pause is not supported yet)")
            out.append(Step(pause=parse_duration(pause["duration"], f"{p}.pause.duration")))
    return tuple(out)


def _positive_int(obj: Any, path: str, minimum: int = 1) -> int:
    v = _expect(obj, int, path)
    if v < minimum:
        raise ConfigError(path, f"must be >= {minimum}, got {v}")
    return int(v)


def _analysis(obj: Any, path: str) -> Analysis:
    _expect(obj, dict, path)
    fields = {"alpha", "minSamples", "baselineMinSamples", "bucketSeconds", "allowedLateness", "idleTimeout",
              "window", "metrics", "segments", "maxSegments"}
    _unknown(obj, fields, path)
    kw: dict[str, Any] = {}
    if "alpha" in obj:
        a = _expect(obj["alpha"], (int, float), f"{path}.alpha")
        if not 0 < a < 1:
            raise ConfigError(f"{path}.alpha", f"must be in (0, 1), got {a}")
        kw["alpha"] = float(a)
    if "minSamples" in obj:
        kw["min_samples"] = _positive_int(obj["minSamples"], f"{path}.minSamples")
    if "baselineMinSamples" in obj:
        kw["baseline_min_samples"] = _positive_int(obj["baselineMinSamples"], f"{path}.baselineMinSamples")
    if "bucketSeconds" in obj:
        kw["bucket_seconds"] = _positive_int(obj["bucketSeconds"], f"{path}.bucketSeconds")
    for key, name in (("allowedLateness", "allowed_lateness"), ("idleTimeout", "idle_timeout"),
                      ("window", "window")):
        if key in obj:
            kw[name] = parse_duration(obj[key], f"{path}.{key}")
    if "metrics" in obj:
        metrics = []
        for i, raw in enumerate(_expect(obj["metrics"], list, f"{path}.metrics")):
            p = f"{path}.metrics[{i}]"
            _expect(raw, dict, p)
            _unknown(raw, {"name", "direction", "critical", "minSamples"}, p)
            name = _expect(raw.get("name"), str, f"{p}.name")
            if spec_for(name) is None:
                raise ConfigError(f"{p}.name", f"unknown metric {name!r} (see docs/metrics.md)")
            direction = raw.get("direction")
            if direction is not None and direction not in ("increase", "decrease"):
                raise ConfigError(f"{p}.direction", f"must be increase or decrease, got {direction!r}")
            ms = raw.get("minSamples")
            metrics.append(MetricOverride(
                name, direction, bool(_expect(raw.get("critical", True), bool, f"{p}.critical")),
                _positive_int(ms, f"{p}.minSamples") if ms is not None else None))
        kw["metrics"] = tuple(metrics)
    if "segments" in obj:
        dims: list[str] = []
        for i, raw in enumerate(_expect(obj["segments"], list, f"{path}.segments")):
            p = f"{path}.segments[{i}]"
            dim = _expect(raw, str, p)
            if dim not in SEGMENT_DIMENSIONS:
                raise ConfigError(p, f"unknown dimension {dim!r} (allowed: {', '.join(SEGMENT_DIMENSIONS)})")
            if dim in dims:
                raise ConfigError(p, f"dimension {dim!r} is listed twice")
            dims.append(dim)
        kw["segments"] = tuple(dims)
    if "maxSegments" in obj:
        n = _positive_int(obj["maxSegments"], f"{path}.maxSegments")
        if n > MAX_SEGMENTS_LIMIT:
            raise ConfigError(f"{path}.maxSegments", f"must be <= {MAX_SEGMENTS_LIMIT}, got {n}")
        kw["max_segments"] = n
    return Analysis(**kw)


def parse_rollout(doc: Any, path: str = "") -> Rollout:
    """An ``AgentRollout`` document (a dict from YAML or JSON) into a :class:`Rollout`."""
    where = f"{path}:" if path else ""
    _expect(doc, dict, f"{where}$")
    if doc.get("apiVersion") != API_VERSION:
        raise ConfigError(f"{where}apiVersion", f"must be {API_VERSION}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != KIND:
        raise ConfigError(f"{where}kind", f"must be {KIND}, got {doc.get('kind')!r}")
    meta = doc.get("metadata") or {}
    _expect(meta, dict, f"{where}metadata")
    spec = _expect(doc.get("spec"), dict, f"{where}spec")
    _unknown(spec, {"agent", "stable", "canary", "steps", "analysis", "rollback", "traffic", "paused",
                    "notifications"}, f"{where}spec")
    agent = _expect(spec.get("agent"), str, f"{where}spec.agent")
    if not agent:
        raise ConfigError(f"{where}spec.agent", "must not be empty")
    if "stable" not in spec:
        raise ConfigError(f"{where}spec.stable", "required")
    if "canary" not in spec:
        raise ConfigError(f"{where}spec.canary", "required")
    stable = _workload(spec["stable"], f"{where}spec.stable")
    canary = _workload(spec["canary"], f"{where}spec.canary")
    if stable.version == canary.version:
        raise ConfigError(f"{where}spec.canary.version", "must differ from spec.stable.version")
    return Rollout(
        agent=agent, stable=stable, canary=canary,
        steps=_steps(spec.get("steps", []), f"{where}spec.steps"),
        analysis=_analysis(spec.get("analysis", {}), f"{where}spec.analysis"),
        traffic=_traffic(spec.get("traffic", {}), f"{where}spec.traffic", stable, canary),
        rollback=_rollback(spec.get("rollback", {}), f"{where}spec.rollback"),
        paused=bool(_expect(spec.get("paused", False), bool, f"{where}spec.paused")),
        notifications=_notifications(spec.get("notifications", []), f"{where}spec.notifications"),
        name=meta.get("name"), namespace=meta.get("namespace"),
    )


def load_rollouts(paths: list[str] | tuple[str, ...]) -> list[Rollout]:
    """Every ``AgentRollout`` in the given YAML files (several documents per file allowed)."""
    out: list[Rollout] = []
    seen: dict[str, str] = {}
    for p in paths:
        try:
            docs = list(yaml.safe_load_all(Path(p).read_text()))
        except OSError as exc:
            raise ConfigError(p, f"cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(p, f"not valid YAML: {exc}") from None
        for i, doc in enumerate(d for d in docs if d is not None):
            r = parse_rollout(doc, f"{p}[{i}]" if len(docs) > 1 else p)
            assert r.agent is not None
            if r.agent in seen:
                raise ConfigError(f"{p}: spec.agent", f"agent {r.agent!r} already has a rollout in {seen[r.agent]}")
            seen[r.agent] = p
            out.append(r)
    return out
