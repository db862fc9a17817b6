"""The ``AgentRollout`` resource (``vigil.dev/v1alpha1``): what ``vigil replay --config`` reads and the
Kubernetes custom resource holds.

The settings are msgspec structs, one documented line per field, and they are the one source of truth of
the resource's schema: field names (camelCase in the document, snake_case in Python), types and bounds
(``msgspec.Meta``) are declared once here; the CRD's openAPIV3Schema is checked against :func:`spec_schema`
by the tests. A document is decoded with ``msgspec.convert`` (unknown fields refused), checks across fields
are in ``__post_init__``, and every invalid value is refused with the path of its field
(``spec.analysis.alpha: ...``). Durations are a number of seconds or a Go duration string as Kubernetes
and Argo Rollouts write them (``250ms``, ``30s``, ``5m``, ``1h30m``, ``1.5h``).
"""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import durationpy
import msgspec
import msgspec.inspect as mi
import yaml
from msgspec import Meta

from controller.errors import VigilError
from controller.ingest.catalog import Direction, spec_for

__all__ = ["API_VERSION", "CATEGORICAL_ACTIONS", "CATEGORICAL_FIELDS", "MAX_CATEGORIES_LIMIT", "MAX_SEGMENTS_LIMIT",
           "NOTIFY_ACTIONS", "ROUTERS", "SEGMENT_DIMENSIONS", "SPEC_REQUIRED", "Analysis", "Categorical", "ConfigError",
           "MetricOverride", "Notification", "Promotion", "RollbackPolicy", "Rollout", "RolloutSpec", "SecretRef",
           "Step", "Traffic", "Workload", "load_rollouts", "parse_duration", "parse_rollout", "spec_schema"]

ApiVersion = Literal["vigil.dev/v1alpha1"]
Kind = Literal["AgentRollout"]
Router = Literal["gatewayAPI", "istio", "replicas", "none"]
NotifyAction = Literal["rollback", "alert", "promote", "set_weight"]
#: What ``spec.analysis.segments`` may split the tests by (event fields ``channel`` and ``tenant``).
Dimension = Literal["channel", "tenant"]
#: The event fields whose category mix ``spec.analysis.categorical`` compares (``tool``: the tool calls' names).
CategoricalField = Literal["intent", "model", "finish_reason", "error_type", "tool"]
#: What a categorical shift does: raise an alert, or roll back like a critical metric.
CategoricalAction = Literal["alert", "rollback"]

API_VERSION: str = get_args(ApiVersion)[0]
KIND: str = get_args(Kind)[0]
ROUTERS: tuple[str, ...] = get_args(Router)
NOTIFY_ACTIONS: tuple[str, ...] = get_args(NotifyAction)
SEGMENT_DIMENSIONS: tuple[str, ...] = get_args(Dimension)
CATEGORICAL_FIELDS: tuple[str, ...] = get_args(CategoricalField)
CATEGORICAL_ACTIONS: tuple[str, ...] = get_args(CategoricalAction)
#: The largest ``spec.analysis.categorical.maxCategories`` (it bounds the tests and state per rollout), and the
#: distinct values per agent and field the ingest stage keeps apart before it pools the rest as ``other``.
MAX_CATEGORIES_LIMIT = 100
#: The largest ``spec.analysis.maxSegments``: it bounds the state kept per rollout, so it is bounded itself.
MAX_SEGMENTS_LIMIT = 1000
#: The fields of ``spec`` a resource must have (a :class:`Rollout` built in code may leave them unset: track mode).
SPEC_REQUIRED = ("agent", "stable", "canary")

#: A Kubernetes object name (RFC 1123 subdomain), and an http(s) URL; the CRD has the same patterns.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
URL_PATTERN = r"^https?://[^\s/]+"
_PATTERN_NAMES = {NAME_PATTERN: "a Kubernetes name (lower-case letters, digits, '-' and '.')",
                  URL_PATTERN: "an http or https URL"}
ObjectName = Annotated[str, Meta(pattern=NAME_PATTERN, max_length=253)]
NonEmpty = Annotated[str, Meta(min_length=1)]
Count = Annotated[int, Meta(ge=1)]


class ConfigError(VigilError, ValueError):
    """An invalid configuration; the message starts with the path of the offending field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# --- durations ------------------------------------------------------------------------------------------
# Go's time.ParseDuration grammar (what Kubernetes and Argo Rollouts accept), and a plain number of seconds.
_GO_DURATION = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_SECONDS = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_DURATION_FORMS = "a number of seconds or a duration like 30s, 5m or 1h30m"


def parse_duration(value: Any, path: str) -> float:
    """Seconds from a number (``30``, ``1.5``) or a Go duration string (``"30s"``, ``"1h30m"``, ``"1.5h"``,
    ``"250ms"``; a string of digits is seconds too); negative, infinite and malformed values are refused.

    >>> parse_duration("5m", "x"), parse_duration(1.5, "x"), parse_duration("1h30m", "x")
    (300.0, 1.5, 5400.0)
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(path, f"expected {_DURATION_FORMS}, got {value!r}"[:200])
    if isinstance(value, str):
        text = re.sub(r"(?<=[\d.])\s+(?=[a-zµμ])", "", value.strip())  # "10 s" as before
        if _SECONDS.fullmatch(text):
            seconds = float(text)
        elif _GO_DURATION.fullmatch(text):
            try:
                seconds = durationpy.from_str(text).total_seconds()
            except durationpy.DurationError:
                raise ConfigError(path, f"out of range: {value!r}"[:200]) from None
        else:
            raise ConfigError(path, f"expected {_DURATION_FORMS}, got {value!r}"[:200])
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ConfigError(path, f"must be finite, got {value!r}")
    if seconds < 0:
        raise ConfigError(path, f"must not be negative, got {value!r}")
    return seconds


if TYPE_CHECKING:
    Duration = float
    Pause = float
else:
    class Duration(float):
        """A duration field for the decoder (:func:`_decode` calls :func:`parse_duration`); the settings hold plain
        floats of seconds (:meth:`_Settings.__post_init__`)."""

    class Pause(Duration):
        """``pause: {duration: ...}`` of a step, held as its seconds (:class:`_PauseShape` is its shape)."""


# --- the settings -----------------------------------------------------------------------------------------
class _Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    def __post_init__(self) -> None:
        # the decoder builds Duration instances; keep plain floats (msgspec encodes no float subclass)
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, Duration):
                msgspec.structs.force_setattr(self, name, float(value))


class Workload(_Settings, frozen=True):
    version: NonEmpty
    """The agent version this side runs (matched against the events' ``version``)."""
    deployment: ObjectName | None = None
    """The Kubernetes Deployment serving it (the same on both sides: the version is rolled out in place)."""
    service: ObjectName | None = None
    """The Service in front of it (HTTPRoute backendRef or VirtualService host); default the Deployment's name."""


class _PauseShape(_Settings, frozen=True):
    duration: Duration
    """Event time to hold."""


class Step(_Settings, frozen=True):
    set_weight: Annotated[float, Meta(ge=0, le=100)] | None = None
    """Percent of traffic to send to the canary at this step (``setWeight``)."""
    pause: Pause | None = None
    """Seconds of event time to hold before the next step (``pause: {duration}``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.set_weight is None) == (self.pause is None):
            raise ConfigError("", "a step is exactly one of setWeight or pause")


class MetricOverride(_Settings, frozen=True):
    name: NonEmpty
    """A catalog metric (``escalation_rate``, ``latency_ms``...) or ``eval:<name>``."""
    direction: Direction | None = None
    """``increase`` or ``decrease``: which way is harmful; the catalog's default when unset."""
    critical: bool = True
    """A critical metric rolls back on its own; a non-critical one only raises an alert."""
    min_samples: Count | None = None
    """Canary observations needed before this metric may act; the analysis default when unset."""
    weight: Annotated[float, Meta(gt=0, le=1000)] | None = None
    """Share of the false-alarm budget of each test of this metric, relative to others'; the catalog's when unset."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if spec_for(self.name) is None:
            raise ConfigError("name", f"unknown metric {self.name!r} (see docs/metrics.md)")


class Promotion(_Settings, frozen=True):
    evidence: bool = True
    """Whether a step passes only once a harm of the size below would have been caught; false: on time alone."""
    odds_ratio: Annotated[float, Meta(gt=1)] = 2.0
    """Odds ratio of a harmful outcome, canary against stable, each critical test must have had the data to catch."""
    increase: Annotated[float, Meta(gt=0, lt=1)] = 0.01
    """Or this absolute increase of the harmful share, when larger (outcomes stable almost never has)."""
    power: Annotated[float, Meta(ge=0.5, lt=1)] = 0.9
    """Probability with which a harm of that size would have been caught by now."""


class Categorical(_Settings, frozen=True):
    fields: tuple[CategoricalField, ...] = ("intent", "model", "finish_reason", "error_type", "tool")
    """Event fields whose category mix is compared, canary against stable (both ways); empty: none."""
    action: CategoricalAction = "alert"
    """``alert``: a shifted category share raises an alert; ``rollback``: it rolls back (given minSamples)."""
    max_categories: Annotated[int, Meta(ge=1, le=MAX_CATEGORIES_LIMIT)] = 20
    """Values of a field tested on their own, busiest first; later values are pooled as ``other``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for i, name in enumerate(self.fields):
            if name in self.fields[:i]:
                raise ConfigError(f"fields[{i}]", f"field {name!r} is listed twice")


class Analysis(_Settings, frozen=True):
    alpha: Annotated[float, Meta(gt=0, lt=1)] = 0.01
    """Probability of rolling back a healthy canary over the whole rollout, split across the tests."""
    min_samples: Count = 50
    """Canary observations a metric needs before it may roll back (it may still alert sooner)."""
    baseline_min_samples: Count = 50
    """Stable observations of a value metric needed before its quantile thresholds are set."""
    bucket_seconds: Count = 1
    """Width of the event-time buckets events are summarised into."""
    allowed_lateness: Duration = 5.0
    """Seconds of event time an event may trail the newest read before its bucket has closed (it is then late)."""
    idle_timeout: Duration = 60.0
    """Seconds of event time after which a source partition's last progress report no longer holds the watermark."""
    window: Duration = 60.0
    """Seconds of event time in the sliding window of ``/api/v1/agents`` and the demo."""
    change_every: Duration = 60.0
    """Event time between two fresh starts of each test, so a harm that begins late is judged on what follows it;
    0: every test counts its evidence from the start of the analysis only."""
    stratum: Duration = 30.0
    """Event time pooled into one stratum of every test's tables (cut early where the canary weight changes); the
    tests decide at each stratum's end; at most ``bucketSeconds``: one bucket."""
    metrics: tuple[MetricOverride, ...] = ()
    """Metrics to monitor; empty means every metric present in the events, with catalog defaults."""
    segments: tuple[Dimension, ...] = ()
    """Dimensions (``channel``, ``tenant``) whose every value also gets its own test of each metric; empty: none."""
    max_segments: Annotated[int, Meta(ge=1, le=MAX_SEGMENTS_LIMIT)] = 20
    """Values of a segment dimension tested on their own; values seen after the first ones are pooled as ``other``."""
    promotion: Promotion = msgspec.field(default_factory=Promotion)
    """When a step may pass: only on evidence that a harm of a given size would have been caught."""
    categorical: Categorical = msgspec.field(default_factory=Categorical)
    """The category mix tests (intent, model, finish reason, error type, tool): which fields, and what they do."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for i, dim in enumerate(self.segments):
            if dim in self.segments[:i]:
                raise ConfigError(f"segments[{i}]", f"dimension {dim!r} is listed twice")


class Traffic(_Settings, frozen=True):
    router: Router = "none"
    """``gatewayAPI`` (HTTPRoute weights), ``istio`` (VirtualService weights), ``replicas`` or ``none``."""
    name: ObjectName | None = None
    """The HTTPRoute or VirtualService to weight, in the rollout's namespace (gatewayAPI and istio)."""
    route: str | None = None
    """Istio: the name of the http route to weight; default every route that has both destinations."""
    replicas: Count | None = None
    """Replica ratio: the total replicas split between the two Deployments; default their current total."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.router in ("gatewayAPI", "istio") and self.name is None:
            kind = "HTTPRoute" if self.router == "gatewayAPI" else "VirtualService"
            raise ConfigError("name", f"required with router {self.router} (the {kind} to weight)")
        if self.route is not None and self.router != "istio":
            raise ConfigError("route", "only the istio router has named http routes")
        if self.replicas is not None and self.router != "replicas":
            raise ConfigError("replicas", "only the replicas router splits a replica total")


class RollbackPolicy(_Settings, frozen=True):
    scale_canary_to_zero: bool = True
    """On rollback, scale the canary to zero (true) or keep it warm with no traffic (false)."""
    cooldown: Duration = 300.0
    """Seconds after a rollback during which a new rollback of the same agent only alerts (no flapping)."""
    max_actions: Count = 10
    """Rollbacks vigil may carry out for this resource; beyond, it alerts and marks the rollout Paused."""


class SecretRef(_Settings, frozen=True):
    name: Annotated[str, Meta(pattern=NAME_PATTERN, min_length=1, max_length=253)]
    """A Secret in the rollout's namespace."""
    key: NonEmpty
    """The key of the Secret holding the value."""


class Notification(_Settings, frozen=True):
    webhook: Annotated[str, Meta(pattern=URL_PATTERN)]
    """An http(s) URL that receives each decision as a JSON POST."""
    actions: tuple[NotifyAction, ...] = ("rollback", "alert", "promote")
    """Which decisions to send: ``rollback``, ``alert``, ``promote``, ``set_weight``."""
    secret_ref: SecretRef | None = None
    """A bearer token for the webhook, from a Secret."""


class RolloutSpec(_Settings, frozen=True):
    """The ``spec`` of an ``AgentRollout``; :class:`Rollout` adds the resource's name and namespace."""

    agent: NonEmpty | None = None
    """The agent (``data.agent``); unset only in track mode, where every agent is watched."""
    stable: Workload | None = None
    """The running version; unset means: taken from events with ``track: stable``."""
    canary: Workload | None = None
    """The new version under watch; unset means: taken from events with ``track: canary``."""
    steps: tuple[Step, ...] = ()
    """Traffic steps; empty means watch only: roll back on harm, never promote."""
    analysis: Analysis = msgspec.field(default_factory=Analysis)
    """How the canary is judged."""
    traffic: Traffic = msgspec.field(default_factory=Traffic)
    """How traffic is split between the two versions on the cluster."""
    rollback: RollbackPolicy = msgspec.field(default_factory=RollbackPolicy)
    """What a rollback does, and how often vigil may do it."""
    paused: bool = False
    """Hold the steps where they are (vigil still judges, and still rolls back on harm)."""
    notifications: tuple[Notification, ...] = ()
    """Where decisions are sent besides the resource's status, its Events and the decisions topic."""

    def __post_init__(self) -> None:
        super().__post_init__()
        stable, canary = self.stable, self.canary
        if stable is not None and canary is not None and stable.version == canary.version:
            raise ConfigError("canary.version", "must differ from spec.stable.version")
        if self.traffic.router == "replicas":
            for side, w in (("stable", stable), ("canary", canary)):
                if w is not None and w.deployment is None:
                    raise ConfigError("traffic.router", f"replicas needs spec.{side}.deployment")
            if stable is not None and canary is not None and stable.deployment == canary.deployment:
                raise ConfigError("traffic.router", "replicas needs two Deployments; one Deployment is rolled out "
                                                    "in place (use none, gatewayAPI or istio)")


class Rollout(RolloutSpec, frozen=True):
    name: str | None = None
    """``metadata.name`` of the resource."""
    namespace: str | None = None
    """``metadata.namespace`` of the resource (where its Deployments and routes live)."""

    @property
    def scale_canary_to_zero(self) -> bool:
        return self.rollback.scale_canary_to_zero


class _Metadata(msgspec.Struct, frozen=True):
    """The part of ``metadata`` vigil reads (the API server validates the rest)."""

    name: str | None = None
    namespace: str | None = None


class _Document(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    api_version: ApiVersion
    kind: Kind
    spec: RolloutSpec
    metadata: _Metadata | None = None
    status: dict[str, Any] | None = None
    """Written by the controller; not read as settings."""


# --- decoding ---------------------------------------------------------------------------------------------
def _decode(tp: type, obj: Any) -> Any:
    """msgspec's ``dec_hook``: the duration fields (a :class:`ConfigError` here has a path relative to the field)."""
    if tp is Pause:
        if isinstance(obj, dict) and "duration" not in obj:
            raise ConfigError("duration", "required (an indefinite pause is not supported yet)")
        return Pause(_convert(obj, _PauseShape).duration)
    if tp is Duration:
        return Duration(parse_duration(obj, ""))
    raise NotImplementedError(tp)


def _convert(obj: Any, tp: type[msgspec.Struct]) -> Any:
    try:
        return msgspec.convert(obj, tp, dec_hook=_decode)
    except msgspec.ValidationError as exc:
        raise _config_error(exc, tp, obj) from None


_AT = re.compile(r"(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.S)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_TYPE_WORDS = {"object": "map", "array": "list"}


def _join(path: str, sub: str) -> str:
    return sub if not path else path if not sub else f"{path}{sub}" if sub.startswith("[") else f"{path}.{sub}"


@cache
def _info(tp: type) -> mi.Type:
    return mi.type_info(tp)


def _unwrap(t: mi.Type | None) -> mi.Type | None:
    """The type under an optional (``X | None``) and the shape of a custom type."""
    if isinstance(t, mi.UnionType):
        t = next((u for u in t.types if not isinstance(u, mi.NoneType)), None)
    if isinstance(t, mi.CustomType) and t.cls is Pause:
        t = _info(_PauseShape)
    return t


def _at(tp: type, value: Any, path: str) -> tuple[mi.Type | None, Any]:
    """The declared type and the given value at ``path`` (``.spec.steps[0]``) under ``tp`` and ``value``."""
    t: mi.Type | None = _info(tp)
    for key, index in _STEP.findall(path):
        t = _unwrap(t)
        if key:
            fields = t.fields if isinstance(t, mi.StructType) else ()
            t = next((f.type for f in fields if f.encode_name == key), None)
            value = value.get(key) if isinstance(value, dict) else None
        else:
            t = t.item_type if isinstance(t, mi.ListType | mi.VarTupleType) else None
            value = value[int(index)] if isinstance(value, list | tuple) and int(index) < len(value) else None
    return _unwrap(t), value


def _show(value: Any) -> str:
    return repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."


def _num(x: float) -> str:
    return f"{x:g}"


def _bounds(t: mi.IntType | mi.FloatType) -> str:
    low = f"> {_num(t.gt)}" if t.gt is not None else f">= {_num(t.ge)}" if t.ge is not None else None
    high = f"< {_num(t.lt)}" if t.lt is not None else f"<= {_num(t.le)}" if t.le is not None else None
    if low and high:
        if t.gt is not None and t.lt is not None:
            return f"in ({_num(t.gt)}, {_num(t.lt)})"
        if t.ge is not None and t.le is not None:
            return f"between {_num(t.ge)} and {_num(t.le)}"
        return f"{low} and {high}"
    return low or high or "in range"


def _config_error(exc: msgspec.ValidationError, tp: type, value: Any) -> ConfigError:
    """msgspec's error (``Expected `int` >= 1 - at `$.spec.analysis.minSamples```) as a :class:`ConfigError`
    whose path is relative to ``value`` (``spec.analysis.minSamples``; empty for ``value`` itself) and whose
    message says what is allowed and what was given."""
    m = _AT.fullmatch(str(exc))
    assert m is not None
    message, raw = m["message"], m["path"] or ""
    path = raw.lstrip(".")
    cause = exc.__cause__
    if isinstance(cause, ConfigError):  # from __post_init__ or the dec_hook, relative to the struct or field
        return ConfigError(_join(path, cause.path), cause.message)
    t, given = _at(tp, value, raw)
    if found := re.fullmatch(r"Object missing required field `(.+)`", message):
        return ConfigError(_join(path, found[1]), "required")
    if found := re.fullmatch(r"Object contains unknown field `(.+)`", message):
        allowed = sorted(f.encode_name for f in t.fields) if isinstance(t, mi.StructType) else []
        extra = sorted(str(k) for k in given if k not in allowed) if isinstance(given, dict) else []
        return ConfigError(_join(path, extra[0] if extra else found[1]),
                           f"unknown field (allowed: {', '.join(allowed)})")
    if message.startswith("Invalid enum value") and isinstance(t, mi.LiteralType):
        choices = ", ".join(map(str, t.values))
        return ConfigError(path, f"must be {'one of ' if len(t.values) > 1 else ''}{choices}, got {_show(given)}")
    if re.fullmatch(r"Expected `(int|float)` [<>]=? .*", message) and isinstance(t, mi.IntType | mi.FloatType):
        return ConfigError(path, f"must be {_bounds(t)}, got {_show(given)}")
    if "` matching regex " in message and isinstance(t, mi.StrType) and t.pattern is not None:
        what = _PATTERN_NAMES.get(t.pattern, f"a string matching {t.pattern}")
        return ConfigError(path, f"must be {what}, got {_show(given)}")
    if "` of length " in message and isinstance(t, mi.StrType) and isinstance(given, str):
        if not given:
            return ConfigError(path, "must not be empty")
        if t.min_length is not None and len(given) < t.min_length:
            return ConfigError(path, f"must be at least {t.min_length} characters, got {len(given)}")
        return ConfigError(path, f"must be at most {t.max_length} characters, got {len(given)}")
    if found := re.fullmatch(r"Expected `(.+)`, got `(\w+)`", message):
        expected = " or ".join(_TYPE_WORDS.get(w, w) for w in found[1].split(" | "))
        got = _TYPE_WORDS.get(found[2], found[2])
        return ConfigError(path, f"expected {expected}, got {got}" + ("" if given is None else f" {_show(given)}"))
    return ConfigError(path, message[:1].lower() + message[1:])


def _schema_hook(tp: type) -> dict[str, Any]:
    if tp is Pause:
        return _schema(_PauseShape)
    if tp is Duration:
        return {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}
    raise NotImplementedError(tp)


def spec_schema() -> dict[str, Any]:
    """The JSON Schema (no ``$ref``) of the ``spec`` of an ``AgentRollout``, generated from the structs: what the
    CRD's openAPIV3Schema must say (tests/helm/test_helm_chart.py checks it). A duration is a number or a string."""
    return {**_schema(RolloutSpec), "required": list(SPEC_REQUIRED)}


def _schema(tp: type[msgspec.Struct]) -> dict[str, Any]:
    (ref,), defs = msgspec.json.schema_components([tp], schema_hook=_schema_hook)

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return inline({**defs[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}})
        return {k: inline(v) for k, v in node.items()}

    out: dict[str, Any] = inline(ref)
    return out


def parse_rollout(doc: Any, path: str = "") -> Rollout:
    """An ``AgentRollout`` document (a dict from YAML or JSON) into a :class:`Rollout`."""
    where = f"{path}:" if path else ""
    try:
        resource: _Document = _convert(doc, _Document)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc.path or '$'}", exc.message) from None
    spec = resource.spec
    for name in SPEC_REQUIRED:
        if getattr(spec, name) is None:
            raise ConfigError(f"{where}spec.{name}", "required")
    meta = resource.metadata or _Metadata()
    return Rollout(**msgspec.structs.asdict(spec), name=meta.name, namespace=meta.namespace)


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
