"""The Helm chart ``deploy/helm/vigil`` and the ``AgentRollout`` CRD it ships.

The chart is rendered by the real Helm engine (helm-python-sdk, Helm SDK v4, no helm binary) and every rendered
manifest, and the CRD, is validated against the Kubernetes 1.37 OpenAPI schemas in strict mode (unknown fields
fail) with kubernetes-validate. The ServiceMonitor is a custom resource kubernetes-validate has no schema for
(SchemaNotFoundError): it gets a minimal hand check instead (:func:`_check_service_monitor`). The example
AgentRollouts in ``deploy/examples`` are validated against the CRD's own openAPIV3Schema with jsonschema, and the
CRD's ``spec`` is checked against the msgspec structs of ``controller/config.py``, the one source of truth of the
schema (their JSON Schema, :func:`controller.config.spec_schema`): the same fields, required fields, types, enums,
bounds, patterns and defaults.
"""

from __future__ import annotations

import base64
import copy
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate as kv
import pytest
import yaml

from controller import config as vigil_config
from controller.cli import build_parser
from controller.contracts.decisions import Action, Decision, Evidence

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "vigil"
EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.yaml"))
K8S = "1.37"
RELEASE, NAMESPACE = "canary", "vigil-system"

# Value sets the chart is rendered, validated and linted with.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "service-monitor": {"serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "10s",
                                           "labels": {"release": "kube-prometheus-stack"}}},
    "namespaced-rbac": {"rbac": {"clusterWide": False}},
    "routers": {"traffic": {"gatewayAPI": True, "istio": True}},
    "notification-secrets": {"rbac": {"readNotificationSecrets": True}},
    "notification-secrets-namespaced": {"rbac": {"clusterWide": False, "readNotificationSecrets": True}},
    "existing-admin-secret": {"adminToken": {"existingSecret": "vigil-admin", "existingSecretKey": "token"}},
    "single-replica": {"replicaCount": 1},
    "custom": {
        "replicaCount": 3,
        "image": {"repository": "registry.example.com/ops/vigil", "tag": "0.2.0-rc1", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": 2, "memory": "1Gi"}},
        "kafka": {"bootstrap": "kafka-0.kafka:9093,kafka-1.kafka:9093", "topic": "agents.events",
                  "decisionsTopic": "agents.decisions", "group": "vigil-prod", "partitions": 12,
                  "securityProtocol": "SASL_SSL",
                  "sasl": {"mechanism": "SCRAM-SHA-512", "username": "vigil", "password": "s3cret"}},
        "adminToken": {"value": "fixed-admin-token"},
        "logLevel": "DEBUG",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {
                "matchLabels": {"app.kubernetes.io/name": "vigil"}}}}]}},
        "podAnnotations": {"example.com/team": "ml-platform"},
        "podLabels": {"team": "ml-platform"},
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "service": {"type": "NodePort", "port": 9000},
        "serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": "vigil@p.iam.gserviceaccount.com"}},
    },
    "no-rbac-external-sa": {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops-vigil"},
                            "podDisruptionBudget": {"enabled": False}},
}

# What the controller may do, as (apiGroup, resource, verb): nothing more, nothing less.
BASE_RULES = {
    *(("vigil.dev", "agentrollouts", v) for v in ("get", "list", "watch")),
    *(("vigil.dev", "agentrollouts/status", v) for v in ("get", "patch", "update")),
    *(("apps", "deployments", v) for v in ("get", "list", "watch", "patch")),
    *(("apps", "replicasets", v) for v in ("get", "list", "watch")),
    *((g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")),
}
GATEWAY_RULES = {("gateway.networking.k8s.io", "httproutes", v) for v in ("get", "list", "watch", "patch")}
ISTIO_RULES = {("networking.istio.io", "virtualservices", v) for v in ("get", "list", "watch", "patch")}
LEASE_RULES = {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
# Only with rbac.readNotificationSecrets: the webhooks' bearer tokens.
SECRET_RULES = {("", "secrets", "get")}

# CRD fields (paths under the AgentRollout, "[]" for the items of a list) that controller/config.py does not read
# yet; a path here allows everything under it. Keep it empty: every CRD field maps onto a config field.
PENDING_IN_CONFIG: list[str] = []


# ---------------------------------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as ch:
        yield ch


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every manifest the chart renders with ``values`` (NOTES.txt and disabled templates left out)."""
    out = chart.render(copy.deepcopy(values) if values else None, name=RELEASE, namespace=NAMESPACE)
    return [d for key, text in sorted(out.items()) if key.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    with helm.Chart.load(CHART) as ch:
        crds = ch.crds
    assert [c["name"] for c in crds] == ["crds/agentrollouts.vigil.dev.yaml"]
    docs = [d for d in yaml.safe_load_all(crds[0]["data"]) if d]
    assert len(docs) == 1
    return docs[0]


def crd_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def to_json_schema(node: Any) -> Any:
    """The CRD's OpenAPI v3 schema as a JSON Schema (draft 4 semantics, like OpenAPI 3.0's) that behaves like the
    API server: ``x-kubernetes-int-or-string`` accepts an integer or a string, ``nullable`` accepts null, and an
    object with ``properties`` refuses unknown fields (the server prunes them, and kubectl's default server-side
    field validation, Strict, refuses them)."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node and "additionalProperties" not in node and not node.get(
            "x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def rollout_validator(crd: dict[str, Any]) -> jsonschema.Draft4Validator:
    schema = to_json_schema(crd_schema(crd))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def schema_paths(node: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    """Every property path under ``node`` ("spec.steps[].setWeight") with its schema."""
    out: dict[str, dict[str, Any]] = {}
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}.{name}"
        out[path] = sub
        out.update(schema_paths(sub, path))
    if "items" in node:
        out.update(schema_paths(node["items"], f"{prefix}[]"))
    return out


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def _one_branch(node: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema (``anyOf: [X, {type: null}]``) as the schema of X, keeping its default."""
    branches = [b for b in node.get("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        return {**{k: v for k, v in node.items() if k != "anyOf"}, **branches[0]}
    return node


def config_paths(node: dict[str, Any] | None = None, prefix: str = "spec") -> dict[str, dict[str, Any]]:
    """Every field path ("spec.steps[].setWeight") of the config structs, from their JSON Schema
    (:func:`controller.config.spec_schema`: names as the document spells them), with its schema."""
    node = _one_branch(vigil_config.spec_schema() if node is None else node)
    out: dict[str, dict[str, Any]] = {}
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}.{name}"
        out[path] = _one_branch(sub)
        out.update(config_paths(sub, path))
    if "items" in node:
        out.update(config_paths(node["items"], f"{prefix}[]"))
    return out


def _facets_of_config(node: dict[str, Any]) -> dict[str, Any]:
    """What a field's JSON Schema (2020-12, from msgspec) says, in the terms of :func:`_facets_of_crd`."""
    node = _one_branch(node)
    if node.get("anyOf") == [{"type": "number", "minimum": 0}, {"type": "string"}]:
        kind = "duration"
    elif "enum" in node:
        kind = "string" if all(isinstance(v, str) for v in node["enum"]) else "?"
    else:
        kind = node.get("type", "?")
    return {"type": kind, "enum": sorted(node.get("enum", [])), "required": sorted(node.get("required", [])),
            "gt": node.get("exclusiveMinimum"), "ge": node.get("minimum") if kind != "duration" else None,
            "lt": node.get("exclusiveMaximum"), "le": node.get("maximum"),
            **{k: node.get(k) for k in ("pattern", "minLength", "maxLength")}}


def _facets_of_crd(node: dict[str, Any]) -> dict[str, Any]:
    """What a CRD field's OpenAPI v3.0 schema says (``exclusiveMinimum: true`` qualifies ``minimum``)."""
    low, high = node.get("minimum"), node.get("maximum")
    low_open, high_open = node.get("exclusiveMinimum") is True, node.get("exclusiveMaximum") is True
    return {"type": "duration" if node.get("x-kubernetes-int-or-string") else node.get("type", "?"),
            "enum": sorted(node.get("enum", [])), "required": sorted(node.get("required", [])),
            "gt": low if low_open else None, "ge": None if low_open else low,
            "lt": high if high_open else None, "le": None if high_open else high,
            **{k: node.get(k) for k in ("pattern", "minLength", "maxLength")}}


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent + ".") or path.startswith(parent + "[]")


def load_example(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1, path
    return docs[0]


def _check_service_monitor(doc: dict[str, Any], service: dict[str, Any]) -> None:
    """kubernetes-validate has no schema for monitoring.coreos.com/v1 (a custom resource): the fields the
    Prometheus Operator needs, by hand."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["metadata"]["name"] and doc["metadata"]["namespace"] == NAMESPACE
    assert set(doc["spec"]) <= {"selector", "namespaceSelector", "endpoints"}
    selector = doc["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= service["metadata"]["labels"].items()
    assert doc["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = doc["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    for key in ("interval", "scrapeTimeout"):
        assert key not in endpoint or re.fullmatch(r"([0-9]+(ms|s|m|h))+", endpoint[key]), endpoint


# ---------------------------------------------------------------------------------------------------- the chart

def test_chart_metadata(chart: helm.Chart) -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (meta["apiVersion"], meta["name"], meta["version"], meta["appVersion"]) == ("v2", "vigil", "0.1.0", "0.1.0")
    assert meta["kubeVersion"] == ">=1.27.0-0" and meta["description"]
    assert (chart.name, chart.version) == ("vigil", "0.1.0")
    assert chart.values["replicaCount"] == 2 and chart.values["serviceMonitor"]["enabled"] is False
    assert chart.values["rbac"]["clusterWide"] is True
    assert chart.values["rbac"]["readNotificationSecrets"] is False
    assert chart.values["image"]["repository"] == "ghcr.io/vigil-dev/vigil"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_manifests_are_valid_kubernetes(chart: helm.Chart, name: str) -> None:
    docs = render(chart, VALUE_SETS[name])
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds
    unvalidated = []
    for doc in docs:
        try:
            kv.validate(doc, K8S, strict=True)
        except kv.SchemaNotFoundError:
            unvalidated.append(doc)
        except kv.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}")
    # Only the ServiceMonitor is a custom resource; it is checked by hand.
    assert [d["kind"] for d in unvalidated] == (["ServiceMonitor"] if "ServiceMonitor" in kinds else [])
    for doc in unvalidated:
        _check_service_monitor(doc, one(docs, "Service"))


def test_crd_is_valid_kubernetes(crd: dict[str, Any]) -> None:
    assert kv.validate(crd, K8S, strict=True) == K8S


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_strict(name: str) -> None:
    report = helm.lint(CHART, copy.deepcopy(VALUE_SETS[name]) or None, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [] and report["total_charts_linted"] == 1, report


def test_lint_reports_invalid_values() -> None:
    report = helm.lint(CHART, {"replicaCount": 0}, strict=True)
    assert report["total_charts_linted"] == 1
    assert any("/replicaCount" in e for e in report["errors"]), report


@pytest.mark.parametrize(("values", "where"), [
    ({"replicaCount": 0}, "'/replicaCount'"),
    ({"replicaCount": "2"}, "'/replicaCount'"),
    ({"image": {"pullPolicy": "Sometimes"}}, "'/image/pullPolicy'"),
    ({"image": {"digest": "latest"}}, "'/image/digest'"),
    ({"rbac": {"clusterwide": False}}, "'/rbac': additional properties 'clusterwide'"),
    ({"replicas": 3}, "additional properties 'replicas'"),
    ({"kafka": {"partitions": 0}}, "'/kafka/partitions'"),
    ({"kafka": {"bootstrap": ""}}, "'/kafka/bootstrap'"),
    ({"kafka": {"securityProtocol": "TLS"}}, "'/kafka/securityProtocol'"),
    ({"logLevel": "TRACE"}, "'/logLevel'"),
    ({"logFormat": "xml"}, "'/logFormat'"),
    ({"http": {"port": 80}}, "'/http/port'"),
    ({"serviceMonitor": {"enabled": "yes"}}, "'/serviceMonitor/enabled'"),
    ({"serviceMonitor": {"interval": "30 seconds"}}, "'/serviceMonitor/interval'"),
    ({"resources": {"limits": {"gpu": 1}}}, "'/resources/limits': additional properties 'gpu'"),
    ({"podAnnotations": {"a": 1}}, "'/podAnnotations/a'"),
    ({"extraEnv": [{"value": "x"}]}, "'/extraEnv/0'"),
    ({"traffic": {"linkerd": True}}, "'/traffic': additional properties 'linkerd'"),
    ({"rbac": {"readNotificationSecrets": "yes"}}, "'/rbac/readNotificationSecrets'"),
])
def test_invalid_values_are_refused_naming_the_field(chart: helm.Chart, values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_every_value_is_in_the_schema() -> None:
    """values.yaml and values.schema.json describe the same keys (the schema refuses any other)."""
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(v: dict[str, Any], s: dict[str, Any], path: str) -> None:
        if "properties" not in s:
            return
        assert s.get("additionalProperties") is False, f"{path or '/'}: additionalProperties must be false"
        assert set(v) <= set(s["properties"]), f"{path}: not in the schema: {set(v) - set(s['properties'])}"
        for key, sub in s["properties"].items():
            assert "type" in sub, f"{path}/{key} has no type"
            if isinstance(v.get(key), dict):
                walk(v[key], sub, f"{path}/{key}")
            elif sub.get("type") == "object" and "properties" in sub:
                pytest.fail(f"{path}/{key} is in the schema but not in values.yaml")

    walk(values, schema, "")
    jsonschema.Draft7Validator(schema).validate(values)


# ---------------------------------------------------------------------------------------------------- RBAC

def _rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), rule
                    out.add((group, resource, verb))
    return out


@pytest.mark.parametrize(("name", "cluster_wide", "extra"), [
    ("default", True, set()),
    ("namespaced-rbac", False, set()),
    ("routers", True, GATEWAY_RULES | ISTIO_RULES),
    ("notification-secrets", True, SECRET_RULES),
    ("notification-secrets-namespaced", False, SECRET_RULES),
])
def test_rbac_is_exactly_least_privilege(chart: helm.Chart, name: str, cluster_wide: bool,
                                         extra: set[tuple[str, str, str]]) -> None:
    docs = render(chart, VALUE_SETS[name])
    roles = by_kind(docs, "Role")
    cluster_roles = by_kind(docs, "ClusterRole")
    lease_roles = [r for r in roles if ("coordination.k8s.io", "leases", "create") in _rules(r)]
    # leader election: a namespaced Role in the release namespace, with only the lease rules
    (lease_role,) = lease_roles
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert _rules(lease_role) == LEASE_RULES
    lease_name = one(docs, "ConfigMap")["data"]["VIGIL_LEASE_NAME"]
    for rule in lease_role["rules"]:
        if set(rule["verbs"]) & {"get", "update"}:
            assert rule["resourceNames"] == [lease_name]
    if cluster_wide:
        (main,) = cluster_roles
        assert [r for r in roles if r is not lease_role] == []
        assert "namespace" not in main["metadata"]
        binding = one(docs, "ClusterRoleBinding")
    else:
        assert cluster_roles == [] and by_kind(docs, "ClusterRoleBinding") == []
        (main,) = [r for r in roles if r is not lease_role]
        assert main["metadata"]["namespace"] == NAMESPACE
        binding = next(b for b in by_kind(docs, "RoleBinding") if b["roleRef"]["name"] == main["metadata"]["name"])
    assert _rules(main) == BASE_RULES | extra
    # the controller is told where it may watch
    assert one(docs, "ConfigMap")["data"]["VIGIL_WATCH_NAMESPACE"] == ("" if cluster_wide else NAMESPACE)
    # each role is bound to the pods' ServiceAccount, and nothing else is bound
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa
    bindings = by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding")
    assert len(bindings) == 2
    assert {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings} == {
        (main["kind"], main["metadata"]["name"]), ("Role", lease_role["metadata"]["name"])}
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    assert binding["roleRef"]["kind"] == main["kind"]


def test_no_rbac_and_an_external_service_account(chart: helm.Chart) -> None:
    docs = render(chart, VALUE_SETS["no-rbac-external-sa"])
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ServiceAccount"}
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-vigil"


# ---------------------------------------------------------------------------------------------------- the pods

def test_security_context(chart: helm.Chart) -> None:
    docs = render(chart)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # the read-only root filesystem leaves /tmp, an emptyDir, as the only writable place
    (mount,) = container(docs)["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


def test_probes_and_ports(chart: helm.Chart) -> None:
    docs = render(chart)
    c = container(docs)
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    (port,) = one(docs, "Service")["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("http", 8080, "http")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert one(docs, "Service")["spec"]["selector"].items() <= pod_labels.items()


def test_arguments_are_those_of_vigil_run(chart: helm.Chart) -> None:
    """The container runs ``vigil run`` with options the real CLI parser accepts, filled from the ConfigMap."""
    docs = render(chart, VALUE_SETS["custom"])
    c = container(docs)
    data = one(docs, "ConfigMap")["data"]
    assert {e["configMapRef"]["name"] for e in c["envFrom"]} == {one(docs, "ConfigMap")["metadata"]["name"]}
    assert c["command"] == ["vigil"]
    args = [re.sub(r"\$\((\w+)\)", lambda m: data[m.group(1)], a) for a in c["args"]]
    assert args[:3] == ["run", "--cluster", "kubernetes"]
    parsed = build_parser().parse_args(args)
    assert (parsed.bootstrap, parsed.topic, parsed.decisions_topic) == (
        "kafka-0.kafka:9093,kafka-1.kafka:9093", "agents.events", "agents.decisions")
    assert (parsed.group, parsed.partitions, parsed.http_host, parsed.http_port) == ("vigil-prod", 12, "0.0.0.0", 8080)
    assert parsed.cluster == "kubernetes"
    # the lease and the namespace come from the environment the chart sets
    env = env_of(c)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert {"VIGIL_LEASE_NAME", "VIGIL_WATCH_NAMESPACE"} <= set(data)


def test_environment(chart: helm.Chart) -> None:
    docs = render(chart)
    env = env_of(container(docs))
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    secret = one(docs, "Secret")
    assert env["VIGIL_ADMIN_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": secret["metadata"]["name"],
                                                                       "key": "admin-token"}}
    assert "KAFKA_SASL_USERNAME" not in env
    data = one(docs, "ConfigMap")["data"]
    assert data["KAFKA_BOOTSTRAP"] == "kafka:9092" and data["VIGIL_LOG_LEVEL"] == "INFO"
    assert data["VIGIL_LOG_FORMAT"] == "json"  # log pipelines in a cluster read one JSON object per line


def test_admin_token_is_generated(chart: helm.Chart) -> None:
    secrets = [base64.b64decode(one(render(chart), "Secret")["data"]["admin-token"]).decode() for _ in range(2)]
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", s) for s in secrets)
    assert secrets[0] != secrets[1]  # random (kept across upgrades by lookup on a real cluster)


def test_admin_token_given(chart: helm.Chart) -> None:
    docs = render(chart, VALUE_SETS["custom"])
    data = one(docs, "Secret")["data"]
    assert {k: base64.b64decode(v).decode() for k, v in data.items()} == {
        "admin-token": "fixed-admin-token", "kafka-sasl-username": "vigil", "kafka-sasl-password": "s3cret"}
    env = env_of(container(docs))
    assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "kafka-sasl-password"
    assert one(docs, "ConfigMap")["data"]["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "s3cret" not in yaml.safe_dump(one(docs, "ConfigMap")) + yaml.safe_dump(one(docs, "Deployment"))


def test_existing_admin_secret(chart: helm.Chart) -> None:
    docs = render(chart, VALUE_SETS["existing-admin-secret"])
    assert by_kind(docs, "Secret") == []
    assert env_of(container(docs))["VIGIL_ADMIN_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "vigil-admin", "key": "token"}}
    # with SASL credentials the chart's Secret holds them, and no token
    values = {**VALUE_SETS["existing-admin-secret"], "kafka": {"sasl": {"username": "u", "password": "p"}}}
    docs = render(chart, values)
    assert set(one(docs, "Secret")["data"]) == {"kafka-sasl-username", "kafka-sasl-password"}


def test_config_checksum_rolls_the_pods(chart: helm.Chart) -> None:
    def annotations(values: dict[str, Any]) -> dict[str, str]:
        return one(render(chart, values), "Deployment")["spec"]["template"]["metadata"]["annotations"]

    base = annotations({})
    assert re.fullmatch(r"[0-9a-f]{64}", base["checksum/config"])
    assert annotations({}) == base  # deterministic: an unchanged upgrade does not roll the pods
    assert annotations({"kafka": {"topic": "other"}})["checksum/config"] != base["checksum/config"]
    assert annotations({"logLevel": "DEBUG"})["checksum/config"] != base["checksum/config"]
    assert annotations({"adminToken": {"value": "t"}})["checksum/secret"] != base["checksum/secret"]


def test_pdb_only_with_more_than_one_replica(chart: helm.Chart) -> None:
    docs = render(chart)
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    single = render(chart, VALUE_SETS["single-replica"])
    assert by_kind(single, "PodDisruptionBudget") == []
    assert one(single, "Deployment")["spec"]["replicas"] == 1


def test_service_monitor(chart: helm.Chart) -> None:
    assert by_kind(render(chart), "ServiceMonitor") == []
    docs = render(chart, VALUE_SETS["service-monitor"])
    sm = one(docs, "ServiceMonitor")
    _check_service_monitor(sm, one(docs, "Service"))
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["interval"] == "15s" and sm["spec"]["endpoints"][0]["scrapeTimeout"] == "10s"


def test_image_resources_and_scheduling(chart: helm.Chart) -> None:
    c = container(render(chart))
    assert c["image"] == "ghcr.io/vigil-dev/vigil:0.1.0" and c["imagePullPolicy"] == "IfNotPresent"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    custom = VALUE_SETS["custom"]
    docs = render(chart, custom)
    c = container(docs)
    pod = one(docs, "Deployment")["spec"]["template"]
    assert c["image"] == "registry.example.com/ops/vigil:0.2.0-rc1" and c["imagePullPolicy"] == "Always"
    assert c["resources"] == custom["resources"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["nodeSelector"] == custom["nodeSelector"]
    assert pod["spec"]["tolerations"] == custom["tolerations"]
    assert pod["spec"]["affinity"] == custom["affinity"]
    assert pod["metadata"]["annotations"]["example.com/team"] == "ml-platform"
    assert pod["metadata"]["labels"]["team"] == "ml-platform"
    assert env_of(c)["TZ"] == {"name": "TZ", "value": "UTC"}
    assert one(docs, "PodDisruptionBudget")  # 3 replicas
    digest = "sha256:" + "ab" * 32
    c = container(render(chart, {"image": {"digest": digest}}))
    assert c["image"] == f"ghcr.io/vigil-dev/vigil@{digest}"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_labels_and_namespaces(chart: helm.Chart, name: str) -> None:
    tag = VALUE_SETS[name].get("image", {}).get("tag", "0.1.0")
    for doc in render(chart, VALUE_SETS[name]):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "vigil"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/version"] == tag
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "vigil-0.1.0"
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]


# ---------------------------------------------------------------------------------------------------- the CRD

def test_crd_names_versions_and_columns(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "agentrollouts.vigil.dev"
    assert (spec["group"], spec["scope"]) == ("vigil.dev", "Namespaced")
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"], names["shortNames"]) == (
        "AgentRollout", "agentrollouts", "agentrollout", ["ar"])
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Agent", "string", ".spec.agent"),
        ("Stable", "string", ".spec.stable.version"),
        ("Canary", "string", ".spec.canary.version"),
        ("Weight", "number", ".status.canaryWeight"),
        ("Status", "string", ".status.phase"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    # every column points at a field of the schema
    paths = schema_paths(crd_schema(crd), "")
    for _, _, json_path in columns[:-1]:
        assert json_path in paths, json_path
    # the API group and plural are the ones the Kubernetes backend calls, when it is there
    api = pytest.importorskip("controller.actuators.kubernetes.api")
    assert api.AGENTROLLOUT == ("vigil.dev", "v1alpha1", "agentrollouts")


_JUNCTORS = ("oneOf", "anyOf", "allOf", "not")
# Inside a junctor, a structural schema may only restrict values (no types, defaults, descriptions...).
_FORBIDDEN_IN_JUNCTORS = {"type", "description", "default", "additionalProperties", "nullable",
                          "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string"}


def _check_structural(node: dict[str, Any], path: str, problems: list[str]) -> None:
    if "type" not in node and not node.get("x-kubernetes-int-or-string") \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: both properties and additionalProperties")
    if "properties" in node and node.get("type") != "object":
        problems.append(f"{path}: properties on a non-object")
    for name, sub in node.get("properties", {}).items():
        _check_structural(sub, f"{path}.{name}", problems)
    if isinstance(node.get("additionalProperties"), dict):
        _check_structural(node["additionalProperties"], f"{path}.*", problems)
    if "items" in node:
        if node.get("type") != "array" or not isinstance(node["items"], dict):
            problems.append(f"{path}: items must be one schema on an array")
        else:
            _check_structural(node["items"], f"{path}[]", problems)
    for junctor in _JUNCTORS:
        for i, branch in enumerate(node.get(junctor, []) if junctor != "not" else [node.get("not", {})]):
            _check_junctor_branch(branch, node, f"{path}.{junctor}[{i}]", problems)


def _check_junctor_branch(branch: dict[str, Any], spine: dict[str, Any], path: str, problems: list[str]) -> None:
    for key in _FORBIDDEN_IN_JUNCTORS & set(branch):
        problems.append(f"{path}: {key} is not allowed in a junctor")
    for name in branch.get("required", []):
        if name not in spine.get("properties", {}):
            problems.append(f"{path}: requires {name}, which the schema does not declare")
    for name, sub in branch.get("properties", {}).items():
        if name not in spine.get("properties", {}):
            problems.append(f"{path}: property {name} is not declared outside the junctor")
        else:
            _check_junctor_branch(sub, spine["properties"][name], f"{path}.{name}", problems)


def test_crd_schema_is_structural(crd: dict[str, Any]) -> None:
    schema = crd_schema(crd)
    assert "x-kubernetes-preserve-unknown-fields" not in schema
    assert schema["type"] == "object"
    problems: list[str] = []
    _check_structural(schema, "", problems)
    assert problems == []
    # metadata may only be typed (the API server validates it itself)
    assert schema["properties"]["metadata"] == {"type": "object"}
    # no field of spec or status escapes validation
    paths = schema_paths(schema, "")
    assert not [p for p, s in paths.items() if s.get("x-kubernetes-preserve-unknown-fields")]
    undocumented = [p for p, s in paths.items() if p.startswith((".spec", ".status")) and not s.get("description")]
    assert undocumented == []


def test_crd_spec_and_status_fields(crd: dict[str, Any]) -> None:
    schema = crd_schema(crd)
    spec, status = schema["properties"]["spec"], schema["properties"]["status"]
    assert spec["required"] == ["agent", "stable", "canary"]
    assert spec["properties"]["agent"]["minLength"] == 1
    router = spec["properties"]["traffic"]["properties"]["router"]
    assert router["enum"] == ["gatewayAPI", "istio", "replicas", "none"] and router["default"] == "none"
    alpha = spec["properties"]["analysis"]["properties"]["alpha"]
    bounds = (alpha["minimum"], alpha["exclusiveMinimum"], alpha["maximum"], alpha["exclusiveMaximum"])
    assert bounds == (0, True, 1, True)
    assert alpha["default"] == vigil_config.Analysis().alpha
    rollback = spec["properties"]["rollback"]["properties"]
    assert rollback["scaleCanaryToZero"]["default"] is vigil_config.Rollout().scale_canary_to_zero
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert set(conditions["items"]["required"]) >= {"type"}  # a map key must be required
    assert status["properties"]["rollback"]["properties"]["state"]["enum"] == ["Pending", "Applied", "Failed"]


def test_crd_status_matches_the_decisions(crd: dict[str, Any]) -> None:
    """status.lastDecision is the decision line (controller/contracts/decisions.py) in camelCase, bar the examples."""
    last = crd_schema(crd)["properties"]["status"]["properties"]["lastDecision"]
    assert set(last["properties"]) == {camel(f) for f in Decision.__struct_fields__} - {"agent", "examples"}
    assert last["properties"]["action"]["enum"] == list(typing.get_args(Action))
    evidence = last["properties"]["evidence"]["items"]["properties"]
    assert list(evidence) == [camel(f) for f in Evidence.__struct_fields__]
    assert evidence["canaryValue"]["nullable"] is True and evidence["stableValue"]["nullable"] is True


def test_crd_router_enum_matches_the_kubernetes_backend(crd: dict[str, Any]) -> None:
    target = pytest.importorskip("controller.actuators.kubernetes.target")
    router = crd_schema(crd)["properties"]["spec"]["properties"]["traffic"]["properties"]["router"]
    assert router["enum"] == list(typing.get_args(target.RouterKind))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid_agentrollouts(rollout_validator: jsonschema.Draft4Validator, path: Path) -> None:
    doc = load_example(path)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in rollout_validator.iter_errors(doc)]
    assert errors == []
    assert (doc["apiVersion"], doc["kind"]) == ("vigil.dev/v1alpha1", "AgentRollout")


def test_examples_cover_the_routers() -> None:
    routers = {load_example(p)["spec"].get("traffic", {}).get("router", "none") for p in EXAMPLES}
    assert routers == {"gatewayAPI", "istio", "replicas", "none"}
    assert len(EXAMPLES) >= 3


def _drop(doc: Any, path: str) -> None:
    """Remove ``path`` ("spec.notifications", "spec.steps[].x") from ``doc`` in place."""
    head, _, rest = path.partition(".")
    name, is_list = (head[:-2], True) if head.endswith("[]") else (head, False)
    if not isinstance(doc, dict) or name not in doc:
        return
    if not rest:
        del doc[name]
    elif is_list:
        for item in doc[name]:
            _drop(item, rest)
    else:
        _drop(doc[name], rest)
        if doc[name] == {}:
            del doc[name]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse_with_the_config_loader(path: Path) -> None:
    """What the CRD accepts in the examples, vigil's own parser accepts too (the fields config.py does not read
    yet left out)."""
    doc = load_example(path)
    for pending in PENDING_IN_CONFIG:
        _drop(doc, pending)
    rollout = vigil_config.parse_rollout(doc, path.name)
    assert rollout.agent == doc["spec"]["agent"]


@pytest.mark.parametrize(("change", "where"), [
    (lambda s: s["steps"].__setitem__(0, {"setWeight": 150}), "spec.steps.0.setWeight"),
    (lambda s: s["steps"].__setitem__(0, {"setWeight": -1}), "spec.steps.0.setWeight"),
    (lambda s: s["steps"].__setitem__(0, {"setWeight": 10, "pause": {"duration": "1m"}}), "spec.steps.0"),
    (lambda s: s["steps"].__setitem__(0, {}), "spec.steps.0"),
    (lambda s: s["steps"].__setitem__(1, {"pause": {"duration": 1.5}}), "spec.steps.1.pause.duration"),
    (lambda s: s["steps"].__setitem__(1, {"pause": {}}), "spec.steps.1.pause"),
    (lambda s: s["traffic"].__setitem__("router", "linkerd"), "spec.traffic.router"),
    (lambda s: s["traffic"].update(router="replicas", replicas=0), "spec.traffic.replicas"),
    (lambda s: s["canary"].__setitem__("deployment", "Support_Bot"), "spec.canary.deployment"),
    (lambda s: s["traffic"].__setitem__("name", "x" * 254), "spec.traffic.name"),
    (lambda s: s.pop("agent"), "spec"),
    (lambda s: s.__setitem__("agent", ""), "spec.agent"),
    (lambda s: s.pop("canary"), "spec"),
    (lambda s: s["stable"].pop("version"), "spec.stable"),
    (lambda s: s["analysis"].__setitem__("alpha", 1), "spec.analysis.alpha"),
    (lambda s: s["analysis"].__setitem__("alpha", 0), "spec.analysis.alpha"),
    (lambda s: s["analysis"].__setitem__("minSamples", 0), "spec.analysis.minSamples"),
    (lambda s: s["analysis"].__setitem__("segments", ["region"]), "spec.analysis.segments.0"),
    (lambda s: s["analysis"]["metrics"][0].__setitem__("direction", "up"), "spec.analysis.metrics.0.direction"),
    (lambda s: s["notifications"][0].__setitem__("webhook", "ftp://x"), "spec.notifications.0.webhook"),
    (lambda s: s["notifications"][0].__setitem__("webhook", "https://"), "spec.notifications.0.webhook"),
    (lambda s: s["notifications"][0]["secretRef"].pop("key"), "spec.notifications.0.secretRef"),
    (lambda s: s["notifications"][0].__setitem__("actions", ["page"]), "spec.notifications.0.actions.0"),
    (lambda s: s["rollback"].__setitem__("scaleCanaryToZero", "yes"), "spec.rollback.scaleCanaryToZero"),
    (lambda s: s.__setitem__("replicaz", 3), "spec"),
])
def test_invalid_agentrollouts_are_refused(rollout_validator: jsonschema.Draft4Validator, change: Any,
                                           where: str) -> None:
    doc = load_example(ROOT / "deploy" / "examples" / "gatewayapi-canary.yaml")
    assert list(rollout_validator.iter_errors(doc)) == []
    change(doc["spec"])
    errors = list(rollout_validator.iter_errors(doc))
    assert errors, "accepted"
    assert where in {".".join(map(str, e.absolute_path)) for e in errors}, [e.message for e in errors]


# ---------------------------------------------------------------------------------------------------- CRD vs config

def test_every_config_field_is_in_the_crd(crd: dict[str, Any]) -> None:
    crd_paths = {p.lstrip(".") for p in schema_paths(crd_schema(crd), "")}
    assert sorted(p for p in config_paths() if p not in crd_paths) == []


def test_every_crd_field_is_in_the_config_or_pending(crd: dict[str, Any]) -> None:
    config = config_paths()
    spec_paths = [p.lstrip(".") for p in schema_paths(crd_schema(crd), "") if p.startswith(".spec.")]
    assert [p for p in spec_paths if p not in config and not any(_under(p, q) for q in PENDING_IN_CONFIG)] == []


def test_crd_spec_says_what_the_structs_say(crd: dict[str, Any]) -> None:
    """The structs are the source of truth: for each field (and spec itself), the CRD declares the same type
    (a duration is int-or-string), required fields, enum, bounds, pattern and lengths as the structs' JSON Schema,
    and every default the CRD states is the struct's default."""
    crd_nodes = {p.lstrip("."): s for p, s in schema_paths(crd_schema(crd), "")
                 .items() if p.startswith(".spec")}
    crd_nodes["spec"] = crd_schema(crd)["properties"]["spec"]
    config = {"spec": vigil_config.spec_schema(), **config_paths()}
    assert set(config) <= set(crd_nodes)  # the names: test_every_config_field_is_in_the_crd
    differences = {}
    for path, node in config.items():
        ours, theirs = _facets_of_config(node), _facets_of_crd(crd_nodes[path])
        if ours != theirs:
            differences[path] = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
        if "default" in crd_nodes[path] and crd_nodes[path]["default"] != node.get("default"):
            differences[f"{path} default"] = (node.get("default"), crd_nodes[path]["default"])
    assert differences == {}


def test_pending_in_config_is_not_stale(crd: dict[str, Any]) -> None:
    """Every PENDING_IN_CONFIG entry is a CRD field; entries config.py already has are reported as a skip (the
    change adding them is in progress; the list is emptied by hand once it is in)."""
    crd_paths = {p.lstrip(".") for p in schema_paths(crd_schema(crd), "")}
    assert [p for p in PENDING_IN_CONFIG if p not in crd_paths] == []
    config = config_paths()
    stale = [p for p in PENDING_IN_CONFIG if any(_under(c, p) for c in config)]
    if stale:
        pytest.skip(f"config.py now has these fields, remove them from PENDING_IN_CONFIG: {', '.join(stale)}")


def test_crd_enums_and_bounds_match_the_config(crd: dict[str, Any]) -> None:
    """Where config.py has a constant for a field, the CRD agrees with it (constants config.py does not have yet
    are skipped, like the fields of PENDING_IN_CONFIG)."""
    spec = crd_schema(crd)["properties"]["spec"]["properties"]
    analysis = spec["analysis"]["properties"]
    for name in ("minSamples", "baselineMinSamples", "bucketSeconds", "maxSegments"):
        assert analysis[name]["minimum"] == 1, name
    assert spec["analysis"]["properties"]["metrics"]["items"]["properties"]["direction"]["enum"] == [
        "increase", "decrease"]
    checks = [
        ("SEGMENT_DIMENSIONS", analysis["segments"]["items"]["enum"]),
        ("ROUTERS", spec["traffic"]["properties"]["router"]["enum"]),
        ("NOTIFY_ACTIONS", spec["notifications"]["items"]["properties"]["actions"]["items"]["enum"]),
    ]
    for constant, enum in checks:
        if hasattr(vigil_config, constant):
            assert enum == list(getattr(vigil_config, constant)), constant
    if hasattr(vigil_config, "MAX_SEGMENTS_LIMIT"):
        assert analysis["maxSegments"]["maximum"] == vigil_config.MAX_SEGMENTS_LIMIT
