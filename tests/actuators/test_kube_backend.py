"""The Kubernetes backend against an API server over real HTTP (kmock, extended in tests/support/kube_emulator.py),
through the official client: routers, retries, rollbacks, status and Events. Waits between retries go to a
fake clock, so nothing here sleeps but the one test of a slow server."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import kubernetes
import msgspec
import pytest

from controller.actuators.kubernetes import (
    NotFoundError,
    PermanentError,
    RetryPolicy,
    TemporaryError,
    with_retries,
)
from controller.actuators.kubernetes.errors import ConflictError
from controller.actuators.kubernetes.rollback import HASH_LABEL, REVISION, ROLLED_BACK_TO
from controller.actuators.protocol import ClusterBackend
from controller.contracts.decisions import Decision, Evidence, iso
from tests.support.kube import POLICY, FakeSleep, backend, target
from tests.support.kube_emulator import EmulatorThread

ROUTE = ("gateway.networking.k8s.io", "v1", "httproutes")
VS = ("networking.istio.io", "v1", "virtualservices")
AR = ("vigil.dev", "v1alpha1", "agentrollouts")



@pytest.fixture
def ns() -> str:
    """A namespace of its own per test: the emulator is shared by the module."""
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


class Seed:
    """Creates and reads objects as another client would (blocking calls, off the emulator's loop)."""

    def __init__(self, client: kubernetes.client.ApiClient, ns: str) -> None:
        self.apps = kubernetes.client.AppsV1Api(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.ns = ns

    def deployment(self, name: str, replicas: int = 2, template: dict[str, Any] | None = None,
                   revision: int | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": self.ns}
        if revision is not None:
            meta["annotations"] = {REVISION: str(revision)}
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                         "template": template or pod_template(name, "v1")}}
        return self._json(self.apps.create_namespaced_deployment(self.ns, body, _preload_content=False))

    def replica_set(self, name: str, owner: dict[str, Any], revision: int, template: dict[str, Any]) -> None:
        ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner["metadata"]["name"],
               "uid": owner["metadata"]["uid"], "controller": True}
        hashed = json.loads(json.dumps(template))
        hashed.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = name.rsplit("-", 1)[-1]
        body = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": name, "namespace": self.ns, "annotations": {REVISION: str(revision)},
                             "ownerReferences": [ref]},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "x"}}, "template": hashed}}
        self.apps.create_namespaced_replica_set(self.ns, body, _preload_content=False).release_conn()

    def get_deployment(self, name: str) -> dict[str, Any]:
        return self._json(self.apps.read_namespaced_deployment(name, self.ns, _preload_content=False))

    def create(self, res: tuple[str, str, str], body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.custom.create_namespaced_custom_object(*res[:2], self.ns, res[2], body))

    def get(self, res: tuple[str, str, str], name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(*res[:2], self.ns, res[2], name))

    def patch(self, res: tuple[str, str, str], name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(*res[:2], self.ns, res[2], name, body,
                                                   _content_type="application/merge-patch+json")

    def events(self) -> list[dict[str, Any]]:
        items = self._json(self.core.list_namespaced_event(self.ns, _preload_content=False))["items"]
        return [e for e in items if e["metadata"]["namespace"] == self.ns]

    @staticmethod
    def _json(resp: Any) -> dict[str, Any]:
        try:
            return dict(json.loads(resp.data))
        finally:
            resp.release_conn()


@pytest.fixture
def seed(client: kubernetes.client.ApiClient, ns: str) -> Seed:
    return Seed(client, ns)


def pod_template(app: str, image: str, **extra_labels: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app, **extra_labels}},
            "spec": {"containers": [{"name": "agent", "image": f"registry.example/agent:{image}"}]}}


def httproute(seed: Seed) -> dict[str, Any]:
    return seed.create(ROUTE, {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "bot"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/chat"}}],
             "backendRefs": [{"name": "bot-v1", "port": 80, "weight": 100},
                             {"name": "bot-v2", "port": 80, "weight": 0}]},
            {"backendRefs": [{"name": "bot-v2", "port": 80}, {"name": "bot-v1", "port": 80}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
             "backendRefs": [{"name": "admin", "port": 80, "weight": 1}]},
        ]}})


def route_weights(route: dict[str, Any]) -> list[dict[str, int | None]]:
    return [{r["name"]: r.get("weight") for r in rule["backendRefs"]} for rule in route["spec"]["rules"]]


def is_patch(plural: str, name: str | None = None) -> Callable[[Any], bool]:
    return lambda r: r.method == "PATCH" and r.resource.plural == plural and (name is None or r.name == name)


def decision(action: str, t: float, weights: dict[str, float], reason: str = "step 1/2: canary weight 10%",
             version: str = "v2") -> Decision:
    ev = Evidence(metric="escalation_rate", detector="mixture_sprt", statistic=12.5, threshold=4.6,
                  p_value=0.0004, n_canary=180, n_stable=1620, canary_value=0.21, stable_value=0.08)
    return Decision(time=iso(t), agent="bot", action=action, version=version,  # type: ignore[arg-type]
                    weights=weights, reason=reason, evidence=[ev, msgspec.structs.replace(ev, p_value=float("nan"))],
                    examples=["conv-4f1d2a9e-SECRET"])


# --- routers -------------------------------------------------------------------------------------------------

async def test_backend_is_a_cluster_backend(client: kubernetes.client.ApiClient, ns: str, sleep: FakeSleep) -> None:
    assert isinstance(backend(client, target(ns), sleep), ClusterBackend)


async def test_httproute_weights_both_in_one_write(emu: EmulatorThread, client: kubernetes.client.ApiClient,
                                                   seed: Seed, ns: str, sleep: FakeSleep) -> None:
    httproute(seed)
    b = backend(client, target(ns), sleep)
    before = len(emu.requests("PATCH", "httproutes"))

    await b.set_weights("bot", {"v1": 90.0, "v2": 10.0})

    assert route_weights(seed.get(ROUTE, "bot")) == [{"bot-v1": 90, "bot-v2": 10}, {"bot-v2": 10, "bot-v1": 90},
                                                     {"admin": 1}]
    assert len(emu.requests("PATCH", "httproutes")) == before + 1
    # no stored version ever had one rule reweighed and not the other, nor one weight of a rule
    splits = [route_weights(v) for v in emu.history("gateway.networking.k8s.io/v1/httproutes", ns, "bot") if v]
    assert [s[:2] for s in splits] == [[{"bot-v1": 100, "bot-v2": 0}, {"bot-v2": None, "bot-v1": None}],
                                       [{"bot-v1": 90, "bot-v2": 10}, {"bot-v2": 10, "bot-v1": 90}]]
    assert await b.observed_weights("bot") == {"v1": 90.0, "v2": 10.0}
    assert b.weights("bot") == {"v1": 90.0, "v2": 10.0}

    await b.set_weights("bot", {"v1": 90.0, "v2": 10.0})  # already there: read, no write
    assert len(emu.requests("PATCH", "httproutes")) == before + 1
    assert sleep.delays == []


async def test_virtualservice_weights_by_host_and_subset(client: kubernetes.client.ApiClient, seed: Seed, ns: str,
                                                         sleep: FakeSleep) -> None:
    def dest(host: str, subset: str | None, weight: int) -> dict[str, Any]:
        d: dict[str, Any] = {"host": host, "port": {"number": 80}}
        if subset:
            d["subset"] = subset
        return {"destination": d, "weight": weight}

    seed.create(VS, {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "bot"},
                     "spec": {"hosts": ["bot"], "http": [
                         {"name": "primary", "route": [dest("bot", "v1", 100), dest("bot", "v2", 0)]},
                         {"name": "fqdn", "route": [dest(f"bot.{ns}.svc.cluster.local", "v1", 100),
                                                    dest(f"bot.{ns}.svc.cluster.local", "v2", 0)]},
                         {"name": "other-subset", "route": [dest("bot", "v1", 100), dest("bot", "v3", 0)]},
                         {"name": "other-host", "route": [dest("bot-legacy", "v1", 100), dest("bot", "v2", 0)]},
                     ]}})
    t = target(ns, "istio", stable_service="bot", canary_service="bot")
    b = backend(client, t, sleep)

    await b.set_weights("bot", {"v1": 75.0, "v2": 25.0})

    http = seed.get(VS, "bot")["spec"]["http"]
    assert [[r["weight"] for r in h["route"]] for h in http] == [[75, 25], [75, 25], [100, 0], [100, 0]]
    assert await b.observed_weights("bot") == {"v1": 75.0, "v2": 25.0}

    # a named http route: only that one moves
    only = backend(client, target(ns, "istio", stable_service="bot", canary_service="bot", istio_route="fqdn"), sleep)
    await only.set_weights("bot", {"v1": 50.0, "v2": 50.0})
    http = seed.get(VS, "bot")["spec"]["http"]
    assert [[r["weight"] for r in h["route"]] for h in http][:2] == [[75, 25], [50, 50]]

    missing = backend(client, target(ns, "istio", stable_service="bot", canary_service="bot",
                                     istio_route="other-subset"), sleep)
    with pytest.raises(PermanentError, match="no route to both"):
        await missing.set_weights("bot", {"v1": 50.0, "v2": 50.0})


async def test_replica_ratio_scales_up_before_down(emu: EmulatorThread, client: kubernetes.client.ApiClient,
                                                   seed: Seed, ns: str, sleep: FakeSleep) -> None:
    seed.deployment("bot-v1", replicas=4)
    seed.deployment("bot-v2", replicas=0)
    b = backend(client, target(ns, "replicas"), sleep)

    def replicas() -> tuple[int, int]:
        return (seed.get_deployment("bot-v1")["spec"]["replicas"], seed.get_deployment("bot-v2")["spec"]["replicas"])

    def patched() -> list[tuple[str, int]]:
        return [(r.name, r.data["spec"]["replicas"]) for r in emu.requests("PATCH", "deployments")
                if r.namespace == ns]

    await b.set_weights("bot", {"v1": 99.0, "v2": 1.0})  # a side with traffic gets a replica at least
    assert replicas() == (3, 1)
    assert patched() == [("bot-v2", 1), ("bot-v1", 3)]  # the canary grew before stable shrank

    await b.set_weights("bot", {"v1": 50.0, "v2": 50.0})
    assert replicas() == (2, 2)
    await b.set_weights("bot", {"v1": 100.0, "v2": 0.0})
    assert replicas() == (4, 0)
    assert patched()[2:] == [("bot-v2", 2), ("bot-v1", 2), ("bot-v1", 4), ("bot-v2", 0)]
    # capacity never dipped below the total of 4 in between
    v1 = [v["spec"]["replicas"] for v in emu.history("apps/v1/deployments", ns, "bot-v1") if v]
    v2 = [v["spec"]["replicas"] for v in emu.history("apps/v1/deployments", ns, "bot-v2") if v]
    assert v1 == [4, 3, 2, 4] and v2 == [0, 1, 2, 0]
    assert await b.observed_weights("bot") == {"v1": 100.0, "v2": 0.0}


# --- conflicts, retries, permanent errors ---------------------------------------------------------------------

async def test_injected_conflict_is_retried_on_the_fresh_version(emu: EmulatorThread,
                                                                  client: kubernetes.client.ApiClient, seed: Seed,
                                                                  ns: str, sleep: FakeSleep) -> None:
    httproute(seed)
    emu.call(lambda api: api.inject(is_patch("httproutes", "bot"), status=409, reason="Conflict"))
    b = backend(client, target(ns), sleep)

    await b.set_weights("bot", {"v1": 80.0, "v2": 20.0})

    gets = [r for r in emu.requests("GET", "httproutes") if r.namespace == ns]
    assert len(gets) == 2  # re-read before the second write
    assert route_weights(seed.get(ROUTE, "bot"))[0] == {"bot-v1": 80, "bot-v2": 20}
    assert sleep.delays == [0.1]


async def test_concurrent_writer_between_read_and_write_is_not_overwritten(
        emu: EmulatorThread, client: kubernetes.client.ApiClient, seed: Seed, ns: str, sleep: FakeSleep) -> None:
    httproute(seed)
    other = emu.api_client()

    def other_writer() -> None:
        # lands after vigil read the route and before vigil's write reaches the server
        api = kubernetes.client.CustomObjectsApi(other)
        route = api.get_namespaced_custom_object(*ROUTE[:2], ns, ROUTE[2], "bot")
        rules = route["spec"]["rules"]
        rules[0]["timeouts"] = {"request": "10s"}
        api.patch_namespaced_custom_object(*ROUTE[:2], ns, ROUTE[2], "bot",
                                           {"metadata": {"labels": {"team": "support"}}, "spec": {"rules": rules}},
                                           _content_type="application/merge-patch+json")

    emu.call(lambda api: api.before(is_patch("httproutes", "bot"), other_writer))
    b = backend(client, target(ns), sleep)
    try:
        await b.set_weights("bot", {"v1": 70.0, "v2": 30.0})
    finally:
        other.close()

    route = seed.get(ROUTE, "bot")
    assert route_weights(route)[0] == {"bot-v1": 70, "bot-v2": 30}
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "10s"}  # the other writer's change survived
    assert route["metadata"]["labels"] == {"team": "support"}
    assert sleep.delays == [0.1]  # exactly one conflict, then the re-applied write
    refused = [e for e in emu.call(lambda api: list(api.errors)) if "modified" in str(e)]
    assert refused, "the first write should have been refused as stale"


async def test_server_errors_are_retried_with_backoff(emu: EmulatorThread, client: kubernetes.client.ApiClient,
                                                      seed: Seed, ns: str, sleep: FakeSleep) -> None:
    httproute(seed)
    reads = lambda r: r.method == "GET" and r.resource.plural == "httproutes" and r.namespace == ns  # noqa: E731
    for status in (500, 503, 502):
        emu.call(lambda api, s=status: api.inject(reads, status=s, reason="ServiceUnavailable"))
    b = backend(client, target(ns), sleep)

    await b.set_weights("bot", {"v1": 95.0, "v2": 5.0})

    assert route_weights(seed.get(ROUTE, "bot"))[0] == {"bot-v1": 95, "bot-v2": 5}
    assert sleep.delays == [0.1, 0.2, 0.4]  # doubling from base_delay


async def test_retries_are_bounded(emu: EmulatorThread, client: kubernetes.client.ApiClient, seed: Seed, ns: str,
                                   sleep: FakeSleep) -> None:
    httproute(seed)
    for _ in range(POLICY.attempts):
        emu.call(lambda api: api.inject(is_patch("httproutes", "bot"), status=500))
    b = backend(client, target(ns), sleep)

    with pytest.raises(TemporaryError, match="gave up after 4 attempts") as info:
        await b.set_weights("bot", {"v1": 95.0, "v2": 5.0})

    assert info.value.attempts == 4 and info.value.status == 500
    assert sleep.delays == [0.1, 0.2, 0.4]
    assert route_weights(seed.get(ROUTE, "bot"))[0] == {"bot-v1": 100, "bot-v2": 0}
    assert b.weights("bot") == {}  # nothing claimed as in force


async def test_timeout_is_retried(emu: EmulatorThread, client: kubernetes.client.ApiClient, seed: Seed, ns: str,
                                  sleep: FakeSleep) -> None:
    httproute(seed)
    # the server takes longer than the client waits; the slow write still reaches it afterwards, stale by then
    emu.call(lambda api: api.before(is_patch("httproutes", "bot"), lambda: time.sleep(1.0)))
    b = backend(client, target(ns), sleep, request_timeout=0.2)

    started = time.monotonic()
    await b.set_weights("bot", {"v1": 60.0, "v2": 40.0})

    assert time.monotonic() - started < 0.9  # gave up on the slow answer, did not wait for it
    assert sleep.delays == [0.1]
    assert route_weights(seed.get(ROUTE, "bot"))[0] == {"bot-v1": 60, "bot-v2": 40}


async def test_permanent_errors_are_not_retried(emu: EmulatorThread, client: kubernetes.client.ApiClient,
                                                seed: Seed, ns: str, sleep: FakeSleep) -> None:
    httproute(seed)
    emu.call(lambda api: api.inject(is_patch("httproutes", "bot"), status=403, reason="Forbidden",
                                    message="httproutes is forbidden"))
    b = backend(client, target(ns), sleep)

    with pytest.raises(PermanentError, match="forbidden") as info:
        await b.set_weights("bot", {"v1": 90.0, "v2": 10.0})
    assert info.value.status == 403
    assert len([r for r in emu.requests("PATCH", "httproutes") if r.namespace == ns]) == 1
    assert sleep.delays == []

    gone = backend(client, target(ns, route_name="no-such-route"), sleep)
    with pytest.raises(NotFoundError):
        await gone.set_weights("bot", {"v1": 90.0, "v2": 10.0})
    assert len([r for r in emu.requests("GET", "httproutes") if r.name == "no-such-route"]) == 1
    assert sleep.delays == []


async def test_with_retries_jitter_and_retry_after() -> None:
    delays: list[float] = []

    async def fake(d: float) -> None:
        delays.append(d)

    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TemporaryError("429", status=429, retry_after=0.7)
        if calls == 2:
            raise ConflictError("409", status=409)
        return "ok"

    policy = RetryPolicy(attempts=3, base_delay=0.1, max_delay=0.5, jitter=0.5)
    assert await with_retries(flaky, policy, fake, rand=lambda: 1.0) == "ok"
    # Retry-After 0.7 is capped at max_delay 0.5; jitter 0.5 at its extreme halves each wait
    assert delays == [0.25, 0.1]

    async def forbidden() -> None:
        raise PermanentError("403")

    with pytest.raises(PermanentError):
        await with_retries(forbidden, policy, fake)
    assert len(delays) == 2


# --- rollback --------------------------------------------------------------------------------------------------

async def test_rollback_two_deployments(emu: EmulatorThread, client: kubernetes.client.ApiClient, seed: Seed,
                                        ns: str, sleep: FakeSleep) -> None:
    httproute(seed)
    seed.deployment("bot-v1", replicas=3)
    seed.deployment("bot-v2", replicas=2)
    b = backend(client, target(ns), sleep)
    await b.set_weights("bot", {"v1": 80.0, "v2": 20.0})

    await b.rollback("bot", "v1", "v2", scale_to_zero=True)

    assert route_weights(seed.get(ROUTE, "bot"))[0] == {"bot-v1": 100, "bot-v2": 0}
    assert seed.get_deployment("bot-v2")["spec"]["replicas"] == 0
    assert seed.get_deployment("bot-v1")["spec"]["replicas"] == 3
    writes = [(r.resource.plural, r.name) for r in emu.requests("PATCH") if r.namespace == ns]
    assert writes[-2:] == [("httproutes", "bot"), ("deployments", "bot-v2")]  # traffic first, then the pods
    assert b.rollbacks["bot"].state == "Applied" and b.rollbacks["bot"].attempts == 1
    assert b.weights("bot") == {"v1": 100.0, "v2": 0.0}


async def test_rollback_keeps_the_canary_warm(client: kubernetes.client.ApiClient, seed: Seed, ns: str,
                                              sleep: FakeSleep) -> None:
    httproute(seed)
    seed.deployment("bot-v1", replicas=3)
    seed.deployment("bot-v2", replicas=2)
    b = backend(client, target(ns, scale_canary_to_zero=False), sleep)
    await b.set_weights("bot", {"v1": 80.0, "v2": 20.0})

    await b.rollback("bot", "v1", "v2", scale_to_zero=False)

    assert route_weights(seed.get(ROUTE, "bot"))[0] == {"bot-v1": 100, "bot-v2": 0}
    assert seed.get_deployment("bot-v2")["spec"]["replicas"] == 2

    with pytest.raises(PermanentError, match="rollout .* is v2 over v1"):
        await b.rollback("bot", "v1", "v9", scale_to_zero=True)
    assert b.rollbacks["bot"].state == "Failed" and b.rollbacks["bot"].version == "v9"


async def test_in_place_undo_restores_the_previous_template(emu: EmulatorThread,
                                                            client: kubernetes.client.ApiClient, seed: Seed,
                                                            ns: str, sleep: FakeSleep) -> None:
    old = pod_template("bot", "v1")
    old["metadata"]["annotations"] = {"prometheus.io/scrape": "true"}
    new = pod_template("bot", "v2", track="canary")  # a label the old template does not have
    new["spec"]["containers"][0]["env"] = [{"name": "PROMPT", "value": "v2"}]
    new["spec"]["terminationGracePeriodSeconds"] = 5
    dep = seed.deployment("bot", template=new, revision=3)
    seed.replica_set("bot-5d8f9", dep, 2, old)
    seed.replica_set("bot-7c6b4", dep, 3, new)
    seed.replica_set("bot-1a2b3", dep, 1, pod_template("bot", "v0"))
    other = seed.deployment("other", template=pod_template("other", "x"), revision=9)
    seed.replica_set("other-9f9f9", other, 2, pod_template("other", "y"))  # higher revision, another owner
    t = target(ns, "none", stable_deployment="bot", canary_deployment="bot")
    b = backend(client, t, sleep)

    await b.rollback("bot", "v1", "v2", scale_to_zero=True)

    got = seed.get_deployment("bot")
    assert got["spec"]["template"] == old  # exactly: the new label, env and grace period are gone
    assert got["spec"]["replicas"] == 2  # not scaled: it is the stable Deployment too
    assert got["metadata"]["annotations"][ROLLED_BACK_TO] == "bot-5d8f9"
    patch = [r for r in emu.requests("PATCH", "deployments") if r.namespace == ns][-1].data
    assert patch["spec"]["template"]["metadata"]["labels"] == {"track": None}  # a diff, with nulls

    # repeated (a retry, a replayed decision): no flip back to the bad template
    writes = len(emu.requests("PATCH", "deployments"))
    await b.rollback("bot", "v1", "v2", scale_to_zero=True)
    assert len(emu.requests("PATCH", "deployments")) == writes
    assert seed.get_deployment("bot")["spec"]["template"] == old


async def test_in_place_undo_ignores_replica_sets_of_another_owner(client: kubernetes.client.ApiClient,
                                                                   seed: Seed, ns: str, sleep: FakeSleep) -> None:
    old, new = pod_template("bot", "v1"), pod_template("bot", "v2")
    dep = seed.deployment("bot", template=new, revision=3)
    seed.replica_set("bot-aaaa1", dep, 1, old)
    # left over from an earlier Deployment of the same name (another uid): never a candidate
    orphan = {"metadata": {"name": "bot", "uid": str(uuid.uuid4())}}
    seed.replica_set("bot-bbbb2", orphan, 2, pod_template("bot", "stale"))
    b = backend(client, target(ns, "none", stable_deployment="bot", canary_deployment="bot"), sleep)
    await b.rollback("bot", "v1", "v2", scale_to_zero=False)
    assert seed.get_deployment("bot")["spec"]["template"] == old


async def test_in_place_undo_without_previous_revision(client: kubernetes.client.ApiClient, seed: Seed, ns: str,
                                                       sleep: FakeSleep) -> None:
    tpl = pod_template("bot", "v2")
    dep = seed.deployment("bot", template=tpl, revision=1)
    seed.replica_set("bot-7c6b4", dep, 1, tpl)
    b = backend(client, target(ns, "none", stable_deployment="bot", canary_deployment="bot"), sleep)

    with pytest.raises(PermanentError, match=f"Deployment {ns}/bot has no revision before 1 to roll back to"):
        await b.rollback("bot", "v1", "v2", scale_to_zero=True)
    assert b.rollbacks["bot"].state == "Failed"
    assert seed.get_deployment("bot")["spec"]["template"] == tpl
    assert sleep.delays == []


# --- status and Events -------------------------------------------------------------------------------------------

def agentrollout(seed: Seed) -> dict[str, Any]:
    return seed.create(AR, {"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout", "metadata": {"name": "bot"},
                            "spec": {"agent": "bot"},
                            "status": {"owner": "kept", "conditions": [{"type": "Synced", "status": "True"}]}})


def conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


async def test_status_conditions_last_decision_and_events(client: kubernetes.client.ApiClient, seed: Seed,
                                                          ns: str, sleep: FakeSleep) -> None:
    httproute(seed)
    seed.deployment("bot-v1", replicas=3)
    seed.deployment("bot-v2", replicas=1)
    ar = agentrollout(seed)
    now = [1_700_000_000.0]
    b = backend(client, target(ns), sleep, clock=lambda: now[0], instance="vigil-0")

    await b.apply(decision("set_weight", 100.0, {"v1": 90.0, "v2": 10.0}))
    st = seed.get(AR, "bot")["status"]
    assert st["phase"] == "Progressing" and (st["stableWeight"], st["canaryWeight"]) == (90.0, 10.0)
    assert st["observedGeneration"] == 1 and st["owner"] == "kept"
    c = conds(st)
    assert list(c) == ["Progressing", "Healthy", "RolledBack", "Paused", "Synced"]  # someone else's kept
    assert c["Synced"] == {"type": "Synced", "status": "True"}
    assert (c["Progressing"]["status"], c["Progressing"]["reason"]) == ("True", "WeightSet")
    assert c["Progressing"]["lastTransitionTime"] == "2023-11-14T22:13:20Z"
    assert c["Healthy"]["status"] == "True" and c["RolledBack"]["status"] == "False"
    assert all(c[k]["observedGeneration"] == 1 for k in ("Progressing", "Healthy", "RolledBack", "Paused"))
    last = st["lastDecision"]
    assert (last["action"], last["version"], last["time"], last["weights"]) == (
        "set_weight", "v2", iso(100.0), {"v1": 90.0, "v2": 10.0})
    assert last["evidence"][0] == {"metric": "escalation_rate", "detector": "mixture_sprt", "statistic": 12.5,
                                   "threshold": 4.6, "pValue": 0.0004, "nCanary": 180, "nStable": 1620,
                                   "canaryValue": 0.21, "stableValue": 0.08}
    assert "pValue" not in last["evidence"][1]  # NaN has no JSON form: left out

    now[0] += 60
    await b.apply(decision("set_weight", 160.0, {"v1": 50.0, "v2": 50.0}, reason="step 2/2: canary weight 50%"))
    now[0] += 60
    await b.apply(decision("alert", 220.0, {"v1": 50.0, "v2": 50.0}, reason="latency_ms of canary v2 looks worse"))
    st = seed.get(AR, "bot")["status"]
    c = conds(st)
    assert c["Progressing"]["lastTransitionTime"] == "2023-11-14T22:13:20Z"  # still True: unchanged
    assert c["Progressing"]["message"] == "step 2/2: canary weight 50%"
    assert (c["Healthy"]["status"], c["Healthy"]["reason"]) == ("False", "CanaryAlert")
    assert c["Healthy"]["lastTransitionTime"] == "2023-11-14T22:15:20Z"
    assert st["phase"] == "Progressing" and st["lastDecision"]["weights"] == {"v1": 50.0, "v2": 50.0}

    now[0] += 60
    await b.apply(decision("rollback", 280.0, {"v1": 100.0, "v2": 0.0},
                           reason="escalation_rate of canary v2 is worse than stable v1"))
    st = seed.get(AR, "bot")["status"]
    c = conds(st)
    assert st["phase"] == "RolledBack" and (st["stableWeight"], st["canaryWeight"]) == (100.0, 0.0)
    assert st["rollback"] == {"state": "Applied", "attempts": 1, "message": st["rollback"]["message"]}
    assert (c["RolledBack"]["status"], c["RolledBack"]["reason"]) == ("True", "RolledBack")
    assert c["RolledBack"]["lastTransitionTime"] == "2023-11-14T22:16:20Z"
    assert c["Healthy"]["lastTransitionTime"] == "2023-11-14T22:15:20Z"  # False before, False now
    assert c["Progressing"]["status"] == "False"
    assert seed.get_deployment("bot-v2")["spec"]["replicas"] == 0

    events = sorted(seed.events(), key=lambda e: e["lastTimestamp"])
    assert [(e["reason"], e["type"]) for e in events] == [("WeightSet", "Normal"), ("WeightSet", "Normal"),
                                                          ("Alert", "Warning"), ("RolledBack", "Warning")]
    for e in events:
        assert re.fullmatch(r"bot\.[0-9a-f]{16}", e["metadata"]["name"])
        assert e["involvedObject"] == {"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout", "name": "bot",
                                       "namespace": ns, "uid": ar["metadata"]["uid"]}
        assert e["reportingComponent"] == "vigil" and e["reportingInstance"] == "vigil-0" and e["count"] == 1
    assert events[-1]["message"] == "escalation_rate of canary v2 is worse than stable v1"
    assert len({e["metadata"]["name"] for e in events}) == 4
    # the conversations behind the evidence never reach the cluster
    assert "SECRET" not in json.dumps(seed.get(AR, "bot")) + json.dumps(events)


async def test_rollback_pending_until_a_later_retry_lands(emu: EmulatorThread, client: kubernetes.client.ApiClient,
                                                          seed: Seed, ns: str, sleep: FakeSleep) -> None:
    httproute(seed)
    seed.deployment("bot-v1", replicas=3)
    seed.deployment("bot-v2", replicas=1)
    agentrollout(seed)
    b = backend(client, target(ns), sleep)
    await b.apply(decision("set_weight", 100.0, {"v1": 90.0, "v2": 10.0}))
    for _ in range(POLICY.attempts):
        emu.call(lambda api: api.inject(is_patch("httproutes", "bot"), status=503, reason="ServiceUnavailable"))
    rollback = decision("rollback", 200.0, {"v1": 100.0, "v2": 0.0}, reason="escalation_rate of canary v2 is worse")

    with pytest.raises(TemporaryError):
        await b.apply(rollback)

    st = seed.get(AR, "bot")["status"]
    assert st["rollback"]["state"] == "Pending" and st["rollback"]["attempts"] == 1
    assert "gave up after 4 attempts" in st["rollback"]["message"]
    assert (conds(st)["RolledBack"]["status"], conds(st)["RolledBack"]["reason"]) == ("Unknown", "RollbackPending")
    assert (st["stableWeight"], st["canaryWeight"]) == (90.0, 10.0)  # what is really in force
    assert route_weights(seed.get(ROUTE, "bot"))[0] == {"bot-v1": 90, "bot-v2": 10}
    assert seed.get_deployment("bot-v2")["spec"]["replicas"] == 1
    assert [e["reason"] for e in seed.events()][-1] == "RollbackPending"

    await b.apply(rollback)  # the caller's later retry

    st = seed.get(AR, "bot")["status"]
    assert st["rollback"]["state"] == "Applied" and st["rollback"]["attempts"] == 2
    assert conds(st)["RolledBack"]["status"] == "True"
    assert (st["stableWeight"], st["canaryWeight"]) == (100.0, 0.0)
    assert seed.get_deployment("bot-v2")["spec"]["replicas"] == 0
    assert sorted(e["reason"] for e in seed.events()) == ["RollbackPending", "RolledBack", "WeightSet"]


async def test_record_without_agentrollout_still_creates_the_event(client: kubernetes.client.ApiClient,
                                                                   seed: Seed, ns: str, sleep: FakeSleep) -> None:
    b = backend(client, target(ns, "none"), sleep)
    await b.apply(decision("promote", 100.0, {"v1": 0.0, "v2": 100.0}, reason="all 2 steps passed"))
    (event,) = seed.events()
    assert (event["reason"], event["type"]) == ("Promoted", "Normal")
    assert "uid" not in event["involvedObject"]
    assert b.weights("bot") == {"v1": 0.0, "v2": 100.0}
