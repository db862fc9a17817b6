"""Every replica answers for every agent: the state stage publishes each agent's verdict to the compacted
verdicts topic, and each replica's VerdictView (no consumer group, every partition) serves the agents its
engine does not hold. The view's table on its own (latest wins, tombstones delete), then on the real broker,
then two workers in one group behind 'a Service': both answer for all four agents, identically."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from aiokafka.partitioner import murmur2

from controller.actuators.memory import InMemoryCluster
from controller.config import parse_rollout
from controller.runtime.kafka import ensure_topics
from controller.runtime.pipeline import PipelineSettings
from controller.runtime.verdicts import VerdictView
from controller.tools.broker import EmbeddedBroker
from controller.tools.simulate import Fault, SimConfig, generate
from controller.worker import Worker
from tests.support.kafka import produce
from tests.support.polling import wait_until

START = 1_790_000_000.0


def doc(agent: str, name: str, namespace: str | None = "shop", **extra: Any) -> bytes:
    return json.dumps({"agent": agent, "name": name, "namespace": namespace, "verdict": "healthy", **extra}).encode()


def test_view_keeps_the_latest_document_per_agent_and_tombstones_delete() -> None:
    view = VerdictView("unused:9092", "unused")
    view.apply(b"a", doc("a", "ra", verdict="inconclusive"))
    view.apply(b"b", doc("b", "rb", namespace=None))
    view.apply(b"a", doc("a", "ra", verdict="unhealthy", rollback=True))  # latest wins
    assert len(view) == 2 and view.by_agent("a") == json.loads(doc("a", "ra", verdict="unhealthy", rollback=True))
    # by rollout name and namespace (a namespace missing on either side matches any), else by agent
    assert view.lookup("shop", "ra")["agent"] == "a" and view.lookup(None, "ra")["agent"] == "a"  # type: ignore[index]
    assert view.lookup("other", "ra") is None
    assert view.lookup("anywhere", "rb")["agent"] == "b"  # type: ignore[index]
    assert view.lookup("anywhere", "a")["agent"] == "a"  # type: ignore[index]
    # a renamed rollout is found under its new name only
    view.apply(b"a", doc("a", "ra2"))
    assert view.lookup("shop", "ra") is None and view.lookup("shop", "ra2")["agent"] == "a"  # type: ignore[index]
    # an unreadable record is skipped: the agent keeps its last document
    view.apply(b"a", b"{not json")
    view.apply(b"a", b"[1, 2]")
    view.apply(None, doc("x", "rx"))
    assert view.invalid == 3 and view.by_agent("a")["name"] == "ra2"  # type: ignore[index]
    # a tombstone deletes, and deleting twice is harmless
    view.apply(b"a", None)
    view.apply(b"a", None)
    assert view.by_agent("a") is None and view.lookup("shop", "ra2") is None and len(view) == 1
    assert view._names == {"rb": {"b"}}  # no index entry outlives its document


async def test_view_reads_every_partition_from_the_beginning(broker: EmbeddedBroker,
                                                             unique: Callable[[str], str]) -> None:
    topic = unique("verdicts")
    await ensure_topics(broker.bootstrap, {topic: 2}, configs={topic: {"cleanup.policy": "compact"}})
    await asyncio.to_thread(produce, broker.bootstrap, topic, [
        (b"a", doc("a", "ra", verdict="inconclusive"), None), (b"b", doc("b", "rb"), None),
        (b"c", doc("c", "rc"), None), (b"a", doc("a", "ra", verdict="unhealthy"), None), (b"c", None, None)])
    view = VerdictView(broker.bootstrap, topic, poll_timeout_ms=100)
    stop = asyncio.Event()
    run = asyncio.create_task(view.run(stop))
    try:
        await wait_until(view.ready.is_set, 15, [run])
        assert sorted(view.docs) == ["a", "b"] and view.by_agent("a")["verdict"] == "unhealthy"  # type: ignore[index]
        # and follows the topic afterwards
        await asyncio.to_thread(produce, broker.bootstrap, topic, [(b"b", None, None), (b"d", doc("d", "rd"), None)])
        await wait_until(lambda: sorted(view.docs) == ["a", "d"], 15, [run])
    finally:
        stop.set()
        await run


def _get(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="GET" if body is None else "POST",
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback only
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _agents(prefix: str) -> list[str]:
    """Four agent names, two on each of the two summaries partitions (keyed by agent, murmur2 as aiokafka)."""
    by_partition: dict[int, list[str]] = {0: [], 1: []}
    i = 0
    while min(len(v) for v in by_partition.values()) < 2:
        name = f"{prefix}-{i}"
        side = by_partition[(murmur2(name.encode()) & 0x7FFFFFFF) % 2]
        if len(side) < 2:
            side.append(name)
        i += 1
    return by_partition[0] + by_partition[1]


async def test_every_replica_serves_every_agents_verdict(broker: EmbeddedBroker,
                                                         unique: Callable[[str], str]) -> None:
    agents = _agents(unique("bot"))
    bad = agents[0]
    rollouts = [parse_rollout({"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout",
                               "metadata": {"name": f"r-{a}", "namespace": "shop"},
                               "spec": {"agent": a, "stable": {"version": "v1"}, "canary": {"version": "v2"}}})
                for a in agents]
    settings = PipelineSettings(bootstrap=broker.bootstrap, topic=unique("events"), decisions_topic=unique("dec"),
                                group=unique("g"), partitions=2, session_timeout_ms=4000, checkpoint_interval=0.2)
    assert settings.verdicts_topic == f"{settings.group}.verdicts"
    workers = [Worker(settings, rollouts, InMemoryCluster(), http_port=0) for _ in range(2)]
    runs = [asyncio.create_task(w.run()) for w in workers]
    try:
        # both replicas in the group, one summaries partition each
        await wait_until(lambda: all(w.is_ready() and w.state and w.state.consumer
                                 and len(w.state.consumer.assignment()) == 1 for w in workers), 30, runs)
        records = []
        for i, agent in enumerate(agents):
            faults = (Fault("escalation", onset=0.0, magnitude=3.0),) if agent == bad else ()
            config = SimConfig(agent=agent, rate=40 if agent == bad else 20, duration=90 if agent == bad else 60,
                               seed=i, start=START, canary_weight=30, faults=faults)
            records += [(agent.encode(), json.dumps(e).encode(), None) for e in generate(config)]
        await asyncio.to_thread(produce, broker.bootstrap, settings.topic, records)
        await wait_until(lambda: sum(w.stats.events for w in workers) == len(records), 30, runs)

        def owners() -> dict[str, int]:
            return {a: i for i, w in enumerate(workers) if w.state for a in agents if a in w.state.engine.agents}

        owner = await wait_until(lambda: len(o := owners()) == len(agents) and o, 20, runs)
        assert sorted(owner.values()) == [0, 0, 1, 1]
        ports = [w.http.port for w in workers if w.http is not None]

        async def answers() -> dict[str, list[tuple[int, dict[str, Any]]]]:
            return {a: [await asyncio.to_thread(_get, p, f"/api/v1/verdict/shop/r-{a}") for p in ports]
                    for a in agents}

        def same(got: dict[str, list[tuple[int, dict[str, Any]]]]) -> bool:
            strip = ("source", "updated")
            return all(s == 200 and {k: v for k, v in d.items() if k not in strip}
                       == {k: v for k, v in got[a][0][1].items() if k not in strip}
                       for a in agents for s, d in got[a]) and got[bad][0][1]["rollback"] is True

        got: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        deadline = asyncio.get_running_loop().time() + 20
        while not (got and same(got)):
            assert asyncio.get_running_loop().time() < deadline, got
            await asyncio.sleep(0.2)
            got = await answers()
        for a in agents:
            for i, (_, d) in enumerate(got[a]):
                assert d["source"] == ("local" if owner[a] == i else "view"), (a, i, d["source"])
                assert d["agent"] == a and d["namespace"] == "shop" and d["name"] == f"r-{a}"
                assert d["updated"] is not None
        # the harmful canary's rollback reaches the replica that does not own it, for Argo and for Flagger
        other = ports[1 - owner[bad]]
        verdict = got[bad][1 - owner[bad]][1]
        assert verdict["source"] == "view" and verdict["verdict"] == "unhealthy" and verdict["healthy"] is False
        assert verdict["phase"] == "rolled_back" and verdict["evidence"]
        status, hook = await asyncio.to_thread(_get, other, "/api/v1/flagger/rollback",
                                               {"name": f"r-{bad}", "namespace": "shop", "phase": "Progressing"})
        assert status == 200 and hook["source"] == "view" and hook["rollback"] is True
        for a in agents[1:]:
            assert got[a][0][1]["rollback"] is False
        for p in ports:
            assert (await asyncio.to_thread(_get, p, "/api/v1/verdict/shop/nothing"))[0] == 404
        # each view reads the verdicts topic on its own: the owner's may still be behind its engine
        await wait_until(lambda: all(w.view.by_agent(a) is not None for w in workers for a in agents), 20, runs)
        # a replica leaving hands its agents over: the other restores them, publishes their verdicts again (after
        # a restore, whether they changed or not) and answers for all four from its engine
        staying = workers[1]
        published = staying.stats.verdicts
        workers[0].stop()
        await runs[0]
        await wait_until(lambda: staying.state and all(a in staying.state.engine.agents for a in agents), 30, runs[1:])
        await wait_until(lambda: staying.stats.verdicts >= published + 2, 10, runs[1:])
        for a in agents:
            status, d = await asyncio.to_thread(_get, ports[1], f"/api/v1/verdict/shop/r-{a}")
            assert status == 200 and d["source"] == "local" and d["rollback"] is (a == bad)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*runs, return_exceptions=True)
