"""Kubernetes mode end to end: events on the embedded Kafka broker, AgentRollouts, Deployments and an
HTTPRoute on the emulated API server (real HTTP, the official client), two vigil replicas electing a leader
through a Lease. The harmful canary is stepped to 25%, then rolled back on the cluster by the leader alone;
the resource's status, an Event, the decisions topic and the rollout's webhook all carry the decision."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

import kubernetes

from controller.actuators.kubernetes.lease import LeaseSettings
from controller.actuators.memory import InMemoryCluster
from controller.contracts.decisions import Decision
from controller.runtime.pipeline import PipelineSettings
from controller.tools.broker import EmbeddedBroker
from controller.tools.simulate import Fault, SimConfig, generate
from controller.worker import KubeMode, Worker
from tests.support.kafka import produce
from tests.support.kube_emulator import EmulatorThread
from tests.support.polling import wait_until
from tests.support.webhooks import Receiver

NS = "shop"
START = 1_790_000_000.0
wait = functools.partial(wait_until, threaded=True, every=0.3)  # the conditions read the API: blocking calls


def deployment(name: str, version: str, replicas: int) -> dict[str, Any]:
    labels = {"app": "bot", "version": version}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "bot", "image": f"bot:{version}"}]}}}}


def seed_cluster(kube: EmulatorThread, agent: str, webhook: str | None = None) -> None:
    client = kube.api_client()
    apps = kubernetes.client.AppsV1Api(client)
    co = kubernetes.client.CustomObjectsApi(client)
    apps.create_namespaced_deployment(NS, deployment(f"{agent}-v1", "v1", 3))
    apps.create_namespaced_deployment(NS, deployment(f"{agent}-v2", "v2", 1))
    co.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", NS, "httproutes", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": f"{agent}-route", "namespace": NS},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
            {"name": f"{agent}-v1", "port": 80, "weight": 100}, {"name": f"{agent}-v2", "port": 80, "weight": 0}]}]}})
    co.create_namespaced_custom_object("vigil.dev", "v1alpha1", NS, "agentrollouts", {
        "apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout", "metadata": {"name": agent, "namespace": NS},
        "spec": {"agent": agent, "stable": {"version": "v1", "deployment": f"{agent}-v1"},
                 "canary": {"version": "v2", "deployment": f"{agent}-v2"},
                 "traffic": {"router": "gatewayAPI", "name": f"{agent}-route"},
                 "steps": [{"setWeight": 25}, {"pause": {"duration": "1h"}}],
                 "rollback": {"scaleCanaryToZero": True},
                 "notifications": [{"webhook": webhook, "actions": ["rollback"]}] if webhook else []}})


def read(kube: EmulatorThread, agent: str) -> dict[str, Any]:
    client = kube.api_client()
    co = kubernetes.client.CustomObjectsApi(client)
    apps = kubernetes.client.AppsV1Api(client)
    route = co.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NS, "httproutes", f"{agent}-route")
    ar = co.get_namespaced_custom_object("vigil.dev", "v1alpha1", NS, "agentrollouts", agent)
    events = kubernetes.client.CoreV1Api(client).list_namespaced_event(NS).items
    return {"weights": {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]},
            "status": ar.get("status") or {},
            "canary_replicas": apps.read_namespaced_deployment(f"{agent}-v2", NS).spec.replicas,
            "events": [(e.reason, e.type, e.involved_object.name) for e in events]}


async def test_leader_rolls_back_a_harmful_canary_on_the_cluster(
        broker: EmbeddedBroker, unique: Callable[[str], str], emu: EmulatorThread) -> None:
    agent = unique("bot").replace("_", "-")
    hooks = Receiver()
    hooks.thread.start()
    await asyncio.to_thread(seed_cluster, emu, agent, hooks.url("/vigil"))
    settings = PipelineSettings(bootstrap=broker.bootstrap, topic=unique("events"), decisions_topic=unique("dec"),
                                group=unique("g"), partitions=2, session_timeout_ms=4000, checkpoint_interval=0.2)
    lease_name = unique("lease")
    decided: list[list[Decision]] = [[], []]
    workers = [Worker(settings, [], InMemoryCluster(), http_port=None, on_decision=decided[i].append,
                      kube=KubeMode(emu.api_client(), LeaseSettings(namespace=NS, name=lease_name, identity=f"pod-{i}",
                                                                     lease_duration=4, renew_deadline=3.0,
                                                                     retry_period=0.5),
                                    watch_namespace=NS, refresh_interval=1.0))
               for i in range(2)]
    runs = [asyncio.create_task(w.run()) for w in workers]
    try:
        await wait(lambda: all(w.is_ready() for w in workers), 60, runs)
        await wait(lambda: any(w.election and w.election.is_leader for w in workers), 30, runs)
        events = list(generate(SimConfig(agent=agent, rate=60, duration=240, seed=5, start=START, canary_weight=25,
                                         faults=(Fault("escalation", onset=60.0, magnitude=3.0),))))
        records = [(agent.encode(), json.dumps(e).encode(), None) for e in events]
        await asyncio.to_thread(produce, broker.bootstrap, settings.topic, records)
        # the step first, then the rollback: weights back to stable in one write, the canary scaled to zero
        # the status is written before the Event: wait for both, or a read between the two sees only one
        state = await wait(lambda: (s := read(emu, agent))["status"].get("phase") == "RolledBack"
                           and ("RolledBack", "Warning", agent) in s["events"] and s, 120, runs)
        assert state["weights"] == {f"{agent}-v1": 100, f"{agent}-v2": 0}
        assert state["canary_replicas"] == 0
        status = state["status"]
        assert status["lastDecision"]["action"] == "rollback" and status["canaryWeight"] == 0
        # escalations tripled: fewer resolved conversations too; either test may be the first to act
        assert {e["metric"] for e in status["lastDecision"]["evidence"]} & {"escalation_rate", "resolution_rate"}
        assert status["rollback"]["state"] == "Applied"
        # the rollback policy's memory, where the next leader will find it
        assert status["rollbacksApplied"] == 1 and status["lastRollbackTime"] == status["lastDecision"]["time"]
        conds = {c["type"]: c for c in status["conditions"]}
        assert conds["RolledBack"]["status"] == "True" and conds["Healthy"]["status"] == "False"
        reasons = {r for r, _, name in state["events"] if name == agent}
        assert {"WeightSet", "RolledBack"} <= reasons, state["events"]
        # one replica decided each decision (the agent's partition), the two never both
        actions = [d.action for ds in decided for d in ds]
        assert actions.count("rollback") == 1 and "set_weight" in actions
        leaders = [w for w in workers if w.election.is_leader]
        assert len(leaders) == 1 and leaders[0].actuator.applied >= 2
        assert all(w.actuator.applied == 0 for w in workers if w is not leaders[0])
        # the leader's notifier told the webhook, once
        (sent,) = await wait_until(lambda: hooks.bodies("/vigil"), 10, runs)
        assert (sent["action"], sent["agent"], sent["cluster"]) == ("rollback", agent, {"applied": True, "error": None})
        assert leaders[0].notifier.sent == 1
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*runs, return_exceptions=True)
        hooks.server.shutdown()
        hooks.server.server_close()
    assert all(w.notifier.closed for w in workers)  # each worker closed its webhooks' HTTP client on the way out


async def test_a_follower_takes_over_and_carries_out_the_rollback(
        broker: EmbeddedBroker, unique: Callable[[str], str], emu: EmulatorThread) -> None:
    """The leader goes away before the harm shows: the other replica takes the Lease, and the rollback that
    either replica decides is carried out by it."""
    agent = unique("bot").replace("_", "-")
    await asyncio.to_thread(seed_cluster, emu, agent)
    settings = PipelineSettings(bootstrap=broker.bootstrap, topic=unique("events"), decisions_topic=unique("dec"),
                                group=unique("g"), partitions=2, session_timeout_ms=4000, checkpoint_interval=0.2)
    lease = LeaseSettings(namespace=NS, name=unique("lease"), identity="pod-0", lease_duration=3,
                          renew_deadline=2.0, retry_period=0.3)
    workers = [Worker(settings, [], InMemoryCluster(), http_port=None,
                      kube=KubeMode(emu.api_client(), dataclasses.replace(lease, identity=f"pod-{i}"),
                                    watch_namespace=NS, refresh_interval=1.0))
               for i in range(2)]
    runs = [asyncio.create_task(w.run()) for w in workers]
    try:
        await wait(lambda: all(w.is_ready() for w in workers), 60, runs)
        leader = await wait(lambda: next((w for w in workers if w.election and w.election.is_leader), None), 30, runs)
        survivor = workers[1 - workers.index(leader)]
        leader.stop()  # a rolling update takes the leader's pod away; it releases the Lease on the way out
        await runs[workers.index(leader)]
        runs = [runs[workers.index(survivor)]]
        await wait(lambda: survivor.election.is_leader, 30, runs)
        events = list(generate(SimConfig(agent=agent, rate=60, duration=240, seed=5, start=START, canary_weight=25,
                                         faults=(Fault("escalation", onset=60.0, magnitude=3.0),))))
        await asyncio.to_thread(produce, broker.bootstrap, settings.topic,
                                [(agent.encode(), json.dumps(e).encode(), None) for e in events])
        state = await wait(lambda: (s := read(emu, agent))["status"].get("phase") == "RolledBack" and s, 120, runs)
        assert state["weights"] == {f"{agent}-v1": 100, f"{agent}-v2": 0} and state["canary_replicas"] == 0
        assert survivor.actuator.applied >= 2 and leader.actuator.applied == 0
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*runs, return_exceptions=True)
