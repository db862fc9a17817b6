"""The endpoints Argo Rollouts (Web metric provider) and Flagger (webhooks) call, over real HTTP, on an
engine fed simulated traffic: a harmful canary, a healthy one, and one too young to judge."""

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
from tests.support.simulated import feed, rollout


@pytest.fixture(scope="module")
def engine() -> Engine:
    eng = Engine([rollout("bad-bot", "bad"), rollout("good-bot", "good"), rollout("new-bot", "new")])
    feed(eng, SimConfig(agent="bad-bot", duration=240, rate=60, canary_weight=30, seed=1,
                        faults=(Fault("escalation", onset=0, magnitude=3.0),)))
    feed(eng, SimConfig(agent="good-bot", duration=600, rate=60, canary_weight=30, seed=2))
    feed(eng, SimConfig(agent="new-bot", duration=3, rate=5, canary_weight=30, seed=3))
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
