"""The endpoints Argo Rollouts (Web metric provider) and Flagger (webhooks) call, over real HTTP, on an
engine fed simulated traffic: a harmful canary, a healthy one, one too young to judge, and an agent in track mode
with two canaries (v2 healthy, v3 harmful); and ``/api/v1/agents`` and ``/metrics`` showing every canary."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from controller.engine.core import Engine
from controller.http.server import HttpServer
from controller.runtime.pipeline import PipelineStats
from controller.tools.simulate import Fault, SimConfig
from tests.support.simulated import feed, rollout, track_rollout


@pytest.fixture(scope="module")
def engine() -> Engine:
    eng = Engine([rollout("bad-bot", "bad"), rollout("good-bot", "good"), rollout("new-bot", "new"),
                  # healthy on five minutes of v2: its verdict may not wait for the evidence to promote
                  track_rollout("multi-bot", "multi", {"promotion": {"evidence": False}})])
    feed(eng, SimConfig(agent="bad-bot", duration=240, rate=60, canary_weight=30, seed=1,
                        faults=(Fault("escalation", onset=0, magnitude=3.0),)))
    feed(eng, SimConfig(agent="good-bot", duration=600, rate=60, canary_weight=30, seed=2))
    feed(eng, SimConfig(agent="new-bot", duration=3, rate=5, canary_weight=30, seed=3))
    feed(eng, SimConfig(agent="multi-bot", duration=300, rate=60, canary_weight=40, seed=4,
                        extra_canary_versions=("v3",), faults=(Fault("escalation", onset=30, magnitude=3.0,
                                                                     version="v3"),)))
    return eng


def call(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if err.headers.get("Content-Type") == "application/json" else {"text": raw}


async def serve(engine: Engine, calls: list[tuple[str, dict[str, Any] | None]]) -> list[tuple[int, Any]]:
    server = HttpServer(PipelineStats(), lambda: engine, lambda: True, port=0)
    port = await server.start()
    try:
        return [await asyncio.to_thread(call, port, path, body) for path, body in calls]
    finally:
        await server.stop()


async def test_argo_web_provider_verdicts(engine: Engine) -> None:
    (s_bad, bad), (s_good, good), (s_new, new), (s_none, none) = await serve(engine, [
        ("/api/v1/verdict/default/bad", None), ("/api/v1/verdict/default/good", None),
        ("/api/v1/verdict/prod/new", None), ("/api/v1/verdict/default/nothing", None)])
    assert s_bad == s_good == s_new == 200 and s_none == 404 and "nothing" in none["error"]
    # Argo: failureCondition result.rollback == true; successCondition result.healthy == true
    assert bad["rollback"] is True and bad["healthy"] is False and bad["verdict"] == "unhealthy"
    assert bad["phase"] == "rolled_back" and bad["agent"] == "bad-bot" and bad["canary"] == "v2"
    esc = [e for e in bad["evidence"] if e["metric"] == "escalation_rate"]
    assert esc and esc[0]["canaryValue"] > 2 * esc[0]["stableValue"] and esc[0]["statistic"] >= esc[0]["threshold"]
    assert "escalation_rate" in bad["alarms"]
    assert good["healthy"] is True and good["rollback"] is False and good["alarms"] == []
    assert good["enoughSamples"] is True and good["canarySamples"] >= 50
    assert new["verdict"] in ("inconclusive", "unknown") and not new["healthy"] and not new["rollback"]
    for doc in (bad, good):
        for ev in doc["evidence"]:
            assert set(ev) == {"metric", "detector", "statistic", "threshold", "pValue", "nCanary", "nStable",
                               "canaryValue", "stableValue"}


async def test_flagger_webhooks(engine: Engine) -> None:
    results = await serve(engine, [
        ("/api/v1/flagger/rollback", {"name": "bad", "namespace": "default", "phase": "Progressing"}),
        ("/api/v1/flagger/rollback", {"name": "good", "namespace": "default", "phase": "Progressing"}),
        ("/api/v1/flagger/confirm-promotion", {"name": "good", "namespace": "default", "phase": "Promoting"}),
        ("/api/v1/flagger/confirm-promotion", {"name": "bad", "namespace": "default", "phase": "Promoting"}),
        ("/api/v1/flagger/confirm-promotion", {"name": "new", "namespace": "default", "phase": "Promoting"}),
        # the Flagger canary may carry another name: its webhook metadata names the AgentRollout
        ("/api/v1/flagger/rollback", {"name": "podinfo", "namespace": "default", "metadata": {"rollout": "bad"}}),
        ("/api/v1/flagger/rollback", {"name": "podinfo", "namespace": "default"}),
        ("/api/v1/flagger/rollback", {"namespace": "default"}),
        ("/api/v1/flagger/unknown-hook", {"name": "bad"}),
    ])
    codes = [code for code, _ in results]
    assert codes == [200, 412, 200, 412, 412, 200, 404, 400, 404]
    assert results[0][1]["rollback"] is True and results[2][1]["healthy"] is True


async def test_get_only_paths_refuse_other_methods(engine: Engine) -> None:
    [(code, _)] = await serve(engine, [("/api/v1/agents", {"x": 1})])
    assert code == 405


async def test_admin_token_guards_the_detailed_endpoints_only(engine: Engine) -> None:
    server = HttpServer(PipelineStats(), lambda: engine, lambda: True, port=0, admin_token="s3cret-token")
    port = await server.start()

    def get(path: str, auth: str | None) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": auth} if auth else {})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    try:
        codes = {(path, auth): await asyncio.to_thread(get, path, auth)
                 for path in ("/api/v1/decisions", "/api/v1/agents", "/api/v1/verdict/default/bad", "/metrics")
                 for auth in (None, "Bearer wrong", "Bearer s3cret-token", "Basic s3cret-token")}
    finally:
        await server.stop()
    for path in ("/api/v1/decisions", "/api/v1/agents"):
        assert codes[(path, "Bearer s3cret-token")] == 200
        assert codes[(path, None)] == codes[(path, "Bearer wrong")] == codes[(path, "Basic s3cret-token")] == 401
    for path in ("/api/v1/verdict/default/bad", "/metrics"):  # what Argo, Flagger and Prometheus call
        assert {codes[(path, a)] for a in (None, "Bearer wrong", "Bearer s3cret-token")} == {200}


async def test_several_canaries_the_verdict_answers_for_the_worst_and_lists_each(engine: Engine) -> None:
    (code, doc), (flag, _), (promo, _) = await serve(engine, [
        ("/api/v1/verdict/default/multi", None),
        ("/api/v1/flagger/rollback", {"name": "multi", "namespace": "default"}),
        ("/api/v1/flagger/confirm-promotion", {"name": "multi", "namespace": "default"})])
    assert code == 200 and flag == 200 and promo == 412  # v3 must be rolled back: so must the agent's rollout
    assert doc["rollback"] is True and doc["healthy"] is False and doc["canary"] == "v3" and doc["stable"] == "v1"
    each = {c["canary"]: c for c in doc["canaries"]}  # in order of admission
    assert sorted(each) == ["v2", "v3"]
    v2, v3 = each["v2"], each["v3"]
    assert v2["verdict"] == "healthy" and v2["phase"] == "progressing" and v2["canarySamples"] >= 50
    assert v3["rollback"] is True and v3["phase"] == "rolled_back" and "escalation_rate" in v3["alarms"]
    assert v3["evidence"] == doc["evidence"] and doc["alarms"] == v3["alarms"]
    # a one-canary document has no "canaries"
    [(_, bad)] = await serve(engine, [("/api/v1/verdict/default/bad", None)])
    assert "canaries" not in bad


async def test_agents_view_and_metrics_show_every_canary(engine: Engine) -> None:
    server = HttpServer(PipelineStats(), lambda: engine, lambda: True, port=0)
    port = await server.start()

    def get(path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return bytes(resp.read())

    try:
        agents = json.loads(await asyncio.to_thread(get, "/api/v1/agents"))
        metrics = (await asyncio.to_thread(get, "/metrics")).decode()
    finally:
        await server.stop()
    multi = agents["multi-bot"]
    each = {c["canary"]: c for c in multi["canaries"]}
    assert sorted(each) == ["v2", "v3"] and multi["stable"] == "v1"
    first = multi["canaries"][0]  # at the top, as with one canary
    assert (multi["canary"], multi["phase"], multi["weights"]) == (first["canary"], first["phase"], first["weights"])
    assert {v: c["phase"] for v, c in each.items()} == {"v2": "progressing", "v3": "rolled_back"}
    assert each["v3"]["weights"] == {"v1": 100.0, "v3": 0.0} and set(each["v2"]["window"]) >= {"escalation_rate"}
    assert multi["unjudged_events"] > 0 and multi["candidates"] == {}  # the first buckets, before admission
    assert [c["canary"] for c in agents["bad-bot"]["canaries"]] == ["v2"] and "unjudged_events" not in agents["bad-bot"]
    for version in ("v2", "v3"):
        assert f'vigil_test_statistic{{agent="multi-bot",test="escalation_rate",version="{version}"}}' in metrics
        assert f'vigil_canary_weight_percent{{agent="multi-bot",version="{version}"}}' in metrics
    assert 'vigil_canary_versions{agent="multi-bot"} 2.0' in metrics
    assert 'vigil_canary_versions{agent="bad-bot"} 1.0' in metrics
    assert 'vigil_refused_canary_versions_total{agent="multi-bot"} 0.0' in metrics
    assert 'vigil_unjudged_canary_events_total{agent="multi-bot"}' in metrics
