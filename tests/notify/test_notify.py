"""Decision notifications (controller/notify/webhooks.py) through the leader's actuator: a real HTTP
receiver on 127.0.0.1 (http.server in a thread, HTTP/1.1 keep-alive) gets the webhooks from the notifier's
aiohttp client, and the bearer tokens come from Secrets on the emulated API server (real HTTP, the official
client). Also: the actuator, the Kubernetes calls and the webhooks honour one RetryPolicy."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kubernetes
import msgspec
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from controller.actuators.kubernetes.errors import PermanentError, TemporaryError
from controller.config import Rollout
from controller.contracts.decisions import Decision, Evidence, iso
from controller.http.server import VigilCollector
from controller.notify.webhooks import Notifier, payload, where
from controller.retry import RetryPolicy
from controller.runtime.actuator import Actuator, ActuatorSettings
from controller.runtime.pipeline import PipelineStats
from tests.support.actuator import Recorder
from tests.support.actuator import rollout as make_rollout
from tests.support.kube import backend, target
from tests.support.kube_emulator import EmulatorThread
from tests.support.traffic import T0
from tests.support.webhooks import Receiver

EVIDENCE = Evidence(metric="escalation_rate", detector="msprt", statistic=5.25, threshold=4.61, p_value=0.003,
                    n_canary=120, n_stable=900, canary_value=0.3, stable_value=0.1)
SECRET_CONVERSATION = "conv-7f3a-customer-said-something-private"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
    r.thread.join(5)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def rollout(*hooks: dict[str, Any], namespace: str = "shop", **spec: Any) -> Rollout:
    return msgspec.structs.replace(make_rollout(notifications=list(hooks), **spec), namespace=namespace)


def decision(action: str, t: float = T0, version: str = "v2") -> Decision:
    return Decision(time=iso(t), agent="bot", action=action, version=version,  # type: ignore[arg-type]
                    weights={"v1": 90.0, version: 10.0}, reason=f"{action}: escalation_rate is worse",
                    evidence=[EVIDENCE], examples=[SECRET_CONVERSATION, "conv-2"])


def actuator(r: Rollout, notifier: Any, apply: Recorder | None = None) -> Actuator:
    async def wait() -> None:
        return None

    return Actuator(ActuatorSettings(bootstrap="unused:0"), apply or Recorder(),
                    lambda agent: r if agent == r.agent else None, lambda: True, wait, notify=notifier)


_notifiers: list[Notifier] = []


@pytest.fixture(autouse=True)
async def _close_notifiers() -> AsyncIterator[None]:
    """Every notifier a test made is closed after it, as the worker closes its own (the HTTP client too)."""
    yield
    while _notifiers:
        await _notifiers.pop().aclose()


def notifier_for(r: Rollout, **kw: Any) -> Notifier:
    kw.setdefault("sleep", Sleeps())
    n = Notifier(lambda agent: r if agent == r.agent else None, **kw)
    _notifiers.append(n)
    return n


async def test_only_the_listed_actions_are_sent_and_never_the_examples(receiver: Receiver) -> None:
    r = rollout({"webhook": receiver.url("/rollbacks"), "actions": ["rollback"]},
                {"webhook": receiver.url("/others"), "actions": ["promote", "alert"]},
                rollback={"cooldown": "10m"})
    n = notifier_for(r)
    act = actuator(r, n)
    stop = asyncio.Event()
    for d in (decision("set_weight"), decision("rollback"), decision("rollback", T0 + 60),  # withheld: an alert
              decision("promote", T0 + 120), decision("pause", T0 + 130)):
        assert await act.carry_out(d, stop)
    assert await n.join(5)

    (rollback,) = receiver.bodies("/rollbacks")
    # sends run concurrently: their arrival order is not promised
    assert sorted((b["time"], b["action"]) for b in receiver.bodies("/others")) == [
        (iso(T0 + 60), "alert"), (iso(T0 + 120), "promote")]
    assert (n.sent, n.failed) == (3, 0)
    assert rollback == {
        "kind": "vigil.decision", "rollout": {"namespace": "shop", "name": "bot-rollout"}, "agent": "bot",
        "action": "rollback", "version": "v2", "time": iso(T0), "reason": "rollback: escalation_rate is worse",
        "weights": {"v1": 90.0, "v2": 10.0},
        "evidence": [{"metric": "escalation_rate", "detector": "msprt", "statistic": 5.25, "threshold": 4.61,
                      "pValue": 0.003, "nCanary": 120, "nStable": 900, "canaryValue": 0.3, "stableValue": 0.1}],
        "cluster": {"applied": True, "error": None}}
    assert any("rollback withheld" in b["reason"] for b in receiver.bodies("/others") if b["action"] == "alert")
    for req in receiver.requests:
        assert b"examples" not in req["raw"] and SECRET_CONVERSATION.encode() not in req["raw"]
        assert req["headers"]["content-type"] == "application/json"
        assert "authorization" not in req["headers"]
        assert len(req["headers"]["x-vigil-decision-id"]) == 32


async def test_a_decision_that_failed_on_the_cluster_says_so(receiver: Receiver) -> None:
    r = rollout({"webhook": receiver.url("/hook"), "actions": ["rollback"]})
    n = notifier_for(r)
    act = actuator(r, n, Recorder([PermanentError("403 Forbidden: deployments is forbidden")]))
    assert await act.carry_out(decision("rollback"), asyncio.Event())
    assert await n.join(5)
    (body,) = receiver.bodies("/hook")
    assert body["cluster"] == {"applied": False, "error": "403 Forbidden: deployments is forbidden"}
    assert act.failed == 1 and n.sent == 1


def seed_secret(client: kubernetes.client.ApiClient, ns: str, name: str, data: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    kubernetes.client.CoreV1Api(client).create_namespaced_secret(ns, body, _preload_content=False).release_conn()


async def test_the_bearer_token_comes_from_the_secret_and_is_cached_for_60_s(
        receiver: Receiver, emu: EmulatorThread, client: kubernetes.client.ApiClient) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    seed_secret(client, ns, "bot-webhook", {"token": "s3cret-token\n", "other": "x"})
    r = rollout({"webhook": receiver.url("/hook"), "actions": ["rollback", "alert"],
                 "secretRef": {"name": "bot-webhook", "key": "token"}}, namespace=ns)
    now = [1000.0]
    n = notifier_for(r, client=client, clock=lambda: now[0])
    act = actuator(r, n)

    def secret_reads() -> int:
        return len([q for q in emu.requests("GET", "secrets") if q.namespace == ns])

    assert await act.carry_out(decision("rollback"), asyncio.Event())
    assert await n.join(5)
    n(decision("alert", T0 + 1), True, None)
    assert await n.join(5)
    assert secret_reads() == 1
    now[0] += 61  # the cached token has expired: read again
    n(decision("alert", T0 + 2), True, None)
    assert await n.join(5)
    assert secret_reads() == 2
    assert [q["headers"]["authorization"] for q in receiver.requests] == ["Bearer s3cret-token"] * 3
    assert (n.sent, n.failed) == (3, 0)
    assert receiver.bodies("/hook")[0]["rollout"] == {"namespace": ns, "name": "bot-rollout"}


@pytest.mark.parametrize(("secret", "logged"), [
    (None, "Secret {ns}/bot-webhook (secretRef) not found"),
    ({"other": "x"}, "Secret {ns}/bot-webhook has no key 'token'"),
    ({"token": "  \n"}, "empty"),
    ("forbidden", "rbac.readNotificationSecrets=true"),
])
async def test_without_its_token_a_notification_is_not_sent(
        receiver: Receiver, emu: EmulatorThread, client: kubernetes.client.ApiClient, caplog: pytest.LogCaptureFixture,
        secret: Any, logged: str) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    if isinstance(secret, dict):
        seed_secret(client, ns, "bot-webhook", secret)
    elif secret == "forbidden":
        seed_secret(client, ns, "bot-webhook", {"token": "s3cret"})
        emu.call(lambda api: api.inject(lambda q: q.resource is not None and q.resource.plural == "secrets"
                                        and q.namespace == ns, status=403, reason="Forbidden",
                                        message=f'secrets "bot-webhook" is forbidden in the namespace "{ns}"'))
    r = rollout({"webhook": receiver.url("/hook"), "actions": ["rollback"],
                 "secretRef": {"name": "bot-webhook", "key": "token"}}, namespace=ns)
    n = notifier_for(r, client=client)
    act = actuator(r, n)
    with caplog.at_level(logging.ERROR, logger="vigil.notify"):
        assert await act.carry_out(decision("rollback"), asyncio.Event())
        assert await n.join(5)
    assert receiver.requests == []
    assert (n.sent, n.failed) == (0, 1)
    assert act.applied == 1
    assert logged.format(ns=ns) in caplog.text
    assert "s3cret" not in caplog.text


async def test_5xx_is_retried_with_backoff_then_succeeds(receiver: Receiver) -> None:
    receiver.statuses.extend([503, 502])
    r = rollout({"webhook": receiver.url("/hook"), "actions": ["rollback"]})
    sleeps = Sleeps()
    n = notifier_for(r, sleep=sleeps)
    assert await actuator(r, n).carry_out(decision("rollback"), asyncio.Event())
    assert await n.join(5)
    assert len(receiver.requests) == 3 and sleeps.delays == [1.0, 2.0]
    assert len({q["headers"]["x-vigil-decision-id"] for q in receiver.requests}) == 1
    assert (n.sent, n.failed) == (1, 0)


async def test_retries_are_bounded_and_a_4xx_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses.extend([500, 500, 500, 400])
    r = rollout({"webhook": receiver.url("/hook?token=in-the-url"), "actions": ["rollback", "alert"]})
    n = notifier_for(r)
    n(decision("rollback"), True, None)
    assert await n.join(5)
    assert len(receiver.requests) == 3 and (n.sent, n.failed) == (0, 1)
    n(decision("alert"), True, None)
    assert await n.join(5)
    assert len(receiver.requests) == 4 and (n.sent, n.failed) == (0, 2)


async def test_a_redirect_is_not_followed_and_counts_as_failed(
        receiver: Receiver, emu: EmulatorThread, client: kubernetes.client.ApiClient,
        caplog: pytest.LogCaptureFixture) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    seed_secret(client, ns, "bot-webhook", {"token": "s3cret"})
    receiver.statuses.append(307)
    r = rollout({"webhook": receiver.url("/hook"), "actions": ["rollback"],
                 "secretRef": {"name": "bot-webhook", "key": "token"}}, namespace=ns)
    sleeps = Sleeps()
    n = notifier_for(r, client=client, sleep=sleeps)
    with caplog.at_level(logging.ERROR, logger="vigil.notify"):
        n(decision("rollback"), True, None)
        assert await n.join(5)
    # the token went to the webhook only: /elsewhere was never asked, and a redirect is not retried either
    assert [q["path"] for q in receiver.requests] == ["/hook"] and sleeps.delays == []
    assert (n.sent, n.failed) == (0, 1)
    assert "HTTP 307: a redirect, not followed" in caplog.text


async def test_a_503_is_retried_up_to_the_policys_attempts_and_a_400_not_at_all(receiver: Receiver) -> None:
    policy = RetryPolicy(attempts=4, base_delay=0.5, max_delay=1.5, jitter=0.0)
    receiver.statuses.extend([503] * 4 + [400])
    r = rollout({"webhook": receiver.url("/hook"), "actions": ["rollback", "alert"]})
    sleeps = Sleeps()
    n = notifier_for(r, retry=policy, sleep=sleeps)
    n(decision("rollback"), True, None)
    assert await n.join(5)
    assert len(receiver.requests) == 4 and sleeps.delays == [0.5, 1.0, 1.5]  # doubling, capped at max_delay
    assert (n.sent, n.failed) == (0, 1)
    n(decision("alert"), True, None)
    assert await n.join(5)
    assert len(receiver.requests) == 5 and sleeps.delays == [0.5, 1.0, 1.5]  # the 400: once, no wait
    assert (n.sent, n.failed) == (0, 2)


async def test_a_retry_after_is_honoured_within_the_policys_bound(receiver: Receiver) -> None:
    receiver.statuses.extend([429, 503, 503])
    receiver.retry_after = ["0.7", "60", None]
    r = rollout({"webhook": receiver.url("/hook"), "actions": ["rollback"]})
    sleeps = Sleeps()
    n = notifier_for(r, retry=RetryPolicy(attempts=4, base_delay=0.1, max_delay=2.0, jitter=0.0), sleep=sleeps)
    n(decision("rollback"), True, None)
    assert await n.join(5)
    # asked 0.7 s: waited so; asked 60 s: capped at max_delay; asked nothing: the schedule (0.1 s doubling)
    assert (n.sent, n.failed) == (1, 0) and sleeps.delays == [0.7, 2.0, 0.4]


async def test_the_actuator_the_kubernetes_calls_and_the_webhooks_honour_one_retry_policy(
        receiver: Receiver, emu: EmulatorThread, client: kubernetes.client.ApiClient) -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.25, max_delay=0.4, jitter=0.0)
    ns = f"t-{uuid.uuid4().hex[:8]}"

    # the Kubernetes calls: the HTTPRoute cannot be read (503) however often it is asked
    kube_sleeps = Sleeps()
    for _ in range(policy.attempts or 0):
        emu.call(lambda api: api.inject(lambda q: q.method == "GET" and q.resource is not None
                                        and q.resource.plural == "httproutes" and q.namespace == ns, status=503,
                                        reason="ServiceUnavailable"))
    with pytest.raises(TemporaryError, match="gave up after 3 attempts"):
        await backend(client, target(ns), kube_sleeps, policy=policy).set_weights("bot", {"v1": 90.0, "v2": 10.0})
    kube_tries = len([q for q in emu.requests("GET", "httproutes") if q.namespace == ns])

    # the actuator: the decision's writes keep failing for now
    async def leading() -> None:
        return None

    act_sleeps, rec = Sleeps(), Recorder([TemporaryError("503 ServiceUnavailable")] * 5)
    act = Actuator(ActuatorSettings(bootstrap="unused:0", retry=policy), rec, lambda agent: None, lambda: True,
                   leading, sleep=act_sleeps)
    assert await act.carry_out(decision("set_weight"), asyncio.Event())
    assert act.failed == 1

    # the webhooks: the receiver keeps answering 503
    hook_sleeps = Sleeps()
    receiver.statuses.extend([503] * 5)
    r = rollout({"webhook": receiver.url("/hook"), "actions": ["rollback"]})
    n = notifier_for(r, retry=policy, sleep=hook_sleeps)
    n(decision("rollback"), True, None)
    assert await n.join(5)
    assert n.failed == 1

    assert (kube_tries, rec.calls, len(receiver.requests)) == (3, 3, 3)
    assert kube_sleeps.delays == act_sleeps.delays == hook_sleeps.delays == [0.25, 0.4]


async def test_connections_are_pooled_and_closed_with_the_notifier(receiver: Receiver) -> None:
    r = rollout({"webhook": receiver.url("/hook"), "actions": ["rollback", "alert"]})
    n = notifier_for(r)
    for i in range(3):
        n(decision("alert", T0 + i), True, None)
        assert await n.join(5)
    assert n.sent == 3 and len({q["port"] for q in receiver.requests}) == 1  # one kept-alive connection
    await n.aclose()
    assert n.closed
    n(decision("rollback"), True, None)  # nothing goes out once closed: dropped, counted
    assert n.pending == 0 and (n.sent, n.failed) == (3, 1) and len(receiver.requests) == 3


async def test_an_unreachable_webhook_does_not_block_the_actuator(caplog: pytest.LogCaptureFixture) -> None:
    # a listening socket that never accepts: the connection is made, no answer ever comes
    with socket.socket() as silent, socket.socket() as closed:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        hooks = [{"webhook": f"http://127.0.0.1:{s.getsockname()[1]}/hook/secret-path", "actions": ["rollback"]}
                 for s in (silent, closed)]
        r = rollout(*hooks)
        n = notifier_for(r, timeout=0.3)
        act = actuator(r, n)
        started = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="vigil.notify"):
            assert await act.carry_out(decision("rollback"), asyncio.Event())
            took = time.perf_counter() - started
            assert n.pending == 2
            assert await n.join(5)
    assert took < 0.25, took  # under one attempt's timeout, let alone three
    assert act.applied == 1 and (n.sent, n.failed) == (0, 2)
    assert "after 3 attempts" in caplog.text and "secret-path" not in caplog.text


async def test_concurrency_and_the_backlog_are_bounded(receiver: Receiver) -> None:
    receiver.gate.clear()  # every answer waits until released
    r = rollout(*({"webhook": receiver.url(f"/{i}"), "actions": ["rollback"]} for i in range(5)))
    n = notifier_for(r, concurrency=2, max_pending=3)
    n(decision("rollback"), True, None)
    assert n.pending == 3 and n.failed == 2  # two dropped
    deadline = time.monotonic() + 5
    while receiver.running[0] < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # time for a third one to start, were it allowed to
    assert receiver.running == [2, 2]
    receiver.gate.set()
    assert await n.join(5)
    assert receiver.running[1] == 2 and (n.sent, n.failed) == (3, 2) and len(receiver.requests) == 3


async def test_a_failing_notifier_never_fails_the_actuator() -> None:
    def broken(d: Decision, applied: bool, error: str | None) -> None:
        raise RuntimeError("boom")

    r = rollout()
    act = actuator(r, broken)
    assert await act.carry_out(decision("rollback"), asyncio.Event())
    assert act.applied == 1


def test_payload_leaves_out_non_finite_numbers_and_where_hides_the_path() -> None:
    d = Decision(time=iso(T0), agent="bot", action="alert", version="v2", weights={}, reason="r",
                 evidence=[Evidence("latency_ms", "cusum", float("inf"), 4.0, float("nan"), 10, 10, None, 1.0)],
                 examples=["x"])
    body = payload(d, rollout(), False, "boom")
    assert body["evidence"] == [{"metric": "latency_ms", "detector": "cusum", "threshold": 4.0, "nCanary": 10,
                                 "nStable": 10, "stableValue": 1.0}]
    assert "examples" not in body
    assert where("https://hooks.slack.com/services/T0/B0/abc") == "https://hooks.slack.com"


def test_the_counters_are_on_metrics() -> None:
    n = Notifier(lambda agent: None)
    n.sent, n.failed = 4, 1
    registry = CollectorRegistry()
    registry.register(VigilCollector(PipelineStats(), lambda: None, lambda: n))
    text = generate_latest(registry).decode()
    assert 'vigil_notifications_total{outcome="sent"} 4.0' in text
    assert 'vigil_notifications_total{outcome="failed"} 1.0' in text
    registry = CollectorRegistry()
    registry.register(VigilCollector(PipelineStats(), lambda: None, lambda: None))
    assert "vigil_notifications" not in generate_latest(registry).decode()
