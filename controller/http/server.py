"""The worker's HTTP endpoints: Prometheus metrics, health, and a read-only view of decisions.

* ``GET /metrics``: Prometheus exposition, read from live state at scrape time by :class:`VigilCollector`;
* ``GET /healthz``: the process serves; ``GET /readyz``: both stages have joined their groups and state is restored;
* ``GET /api/v1/decisions``: the most recent decisions (newest last), as JSON;
* ``GET /api/v1/agents``: per agent, the rollout phase, weights and window counts (these two need
  ``Authorization: Bearer <VIGIL_ADMIN_TOKEN>`` when the worker has an admin token);
* ``GET /api/v1/verdict/{namespace}/{name}``: the verdict for Argo Rollouts' Web metric provider;
* ``POST /api/v1/flagger/rollback`` and ``POST /api/v1/flagger/confirm-promotion``: Flagger's webhooks
  (see :mod:`controller.engine.verdict`).

The verdict and Flagger endpoints answer from the worker's engine when it holds the agent (``"source":
"local"``), else from the verdicts topic read by every replica (``"source": "view"``, see
:mod:`controller.runtime.verdicts`), else 404: behind a Service, any replica answers for every agent.

A deliberately small HTTP/1.1 server on asyncio: one request per connection, bodies up to 64 KiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from controller.contracts.decisions import Decision
from controller.engine.core import Engine
from controller.engine.verdict import verdict
from controller.runtime.pipeline import PipelineStats

if TYPE_CHECKING:
    from controller.runtime.verdicts import VerdictView

__all__ = ["HttpServer", "VigilCollector", "agents_view"]


class VigilCollector(Collector):
    """Reads the pipeline counters and each agent's tests when Prometheus scrapes; with ``notifications``
    (giving the worker's :class:`~controller.notify.webhooks.Notifier` or None), the webhook deliveries too."""

    def __init__(self, stats: PipelineStats, engine: Callable[[], Engine | None],
                 notifications: Callable[[], Any] | None = None) -> None:
        self.stats = stats
        self.engine = engine
        self.notifications = notifications

    def collect(self) -> Iterator[Any]:
        s = self.stats
        yield CounterMetricFamily("vigil_events", "Valid interaction events ingested", value=s.events)
        invalid = CounterMetricFamily("vigil_events_invalid", "Events sent to the dead-letter topic",
                                      labels=["reason"])
        for reason, n in sorted(s.invalid.items()):
            invalid.add_metric([reason], n)
        yield invalid
        decisions = CounterMetricFamily("vigil_decisions", "Decisions made", labels=["action"])
        for action, n in sorted(s.decisions.items()):
            decisions.add_metric([action], n)
        yield decisions
        yield CounterMetricFamily("vigil_checkpoints", "State checkpoints written", value=s.checkpoints)
        yield GaugeMetricFamily("vigil_last_event_time_seconds", "Newest event time seen",
                                value=s.last_event_time)
        notifier = self.notifications() if self.notifications is not None else None
        if notifier is not None:
            sent = CounterMetricFamily("vigil_notifications", "Decision notifications to webhooks, by outcome",
                                       labels=["outcome"])
            sent.add_metric(["sent"], notifier.sent)
            sent.add_metric(["failed"], notifier.failed)
            yield sent
        engine = self.engine()
        if engine is None:
            return
        late = CounterMetricFamily("vigil_late_events", "Events later than the allowed lateness",
                                   labels=["agent"])
        weight = GaugeMetricFamily("vigil_canary_weight_percent", "Canary traffic weight",
                                   labels=["agent", "version"])
        stat = GaugeMetricFamily("vigil_test_statistic", "Log likelihood ratio of each canary test",
                                 labels=["agent", "version", "test"])
        thr = GaugeMetricFamily("vigil_test_threshold", "Threshold of each canary test",
                                labels=["agent", "version", "test"])
        for agent, st in sorted(engine.agents.items()):
            late.add_metric([agent], st.window.late_events)
            if st.policy is None or st.analysis is None:
                continue
            weight.add_metric([agent, st.policy.canary], st.policy.weight)
            for name, t in st.analysis.tests.items():
                stat.add_metric([agent, st.policy.canary, name], t.statistic)
                thr.add_metric([agent, st.policy.canary, name], t.threshold)
        yield from (late, weight, stat, thr)


def agents_view(engine: Engine | None) -> dict[str, Any]:
    if engine is None:
        return {}
    out: dict[str, Any] = {}
    for agent, st in engine.agents.items():
        entry: dict[str, Any] = {"late_events": st.window.late_events}
        if st.policy is not None and st.analysis is not None:
            entry.update(stable=st.policy.stable, canary=st.policy.canary, phase=st.policy.phase,
                         weights=st.policy.weights,
                         window={k: dict(zip(("n_canary", "harm_canary", "n_stable", "harm_stable"), v,
                                             strict=True))
                                 for k, v in st.analysis.window_view().items()})
        out[agent] = entry
    return out


_MAX_BODY = 64 * 1024
_ADMIN_PATHS = frozenset({"/api/v1/decisions", "/api/v1/agents"})


def _json(status: int, doc: object) -> tuple[int, str, bytes]:
    return status, "application/json", msgspec.json.encode(doc)


class HttpServer:
    """Serves the endpoints on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, stats: PipelineStats, engine: Callable[[], Engine | None],
                 ready: Callable[[], bool], host: str = "127.0.0.1", port: int = 8080,
                 registry: CollectorRegistry | None = None, keep: int = 100,
                 notifications: Callable[[], Any] | None = None, view: VerdictView | None = None,
                 admin_token: str | None = None) -> None:
        self.host = host
        # the endpoints that show decisions in full (evidence, example conversation ids) need this bearer token
        # when one is set; metrics, health and the verdicts Argo Rollouts and Flagger call stay open
        self.admin_token = admin_token or None
        self.view = view
        self.port = port
        self.engine = engine
        self.ready = ready
        self.registry = registry or CollectorRegistry()
        self.registry.register(VigilCollector(stats, engine, notifications))
        self.decisions: deque[Decision] = deque(maxlen=keep)
        self._server: asyncio.Server | None = None

    def record(self, decision: Decision) -> None:
        self.decisions.append(decision)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _route(self, method: str, path: str, body: bytes = b"") -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if method == "POST" and path.startswith("/api/v1/flagger/"):
            return self._flagger(path.removeprefix("/api/v1/flagger/"), body)
        if method != "GET":
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(self.registry)
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            return (200, "text/plain", b"ready\n") if self.ready() else (503, "text/plain", b"not ready\n")
        if path == "/api/v1/decisions":
            return 200, "application/json", msgspec.json.encode(list(self.decisions))
        if path == "/api/v1/agents":
            return 200, "application/json", msgspec.json.encode(agents_view(self.engine()))
        parts = path.split("/")
        if len(parts) == 6 and path.startswith("/api/v1/verdict/") and parts[4] and parts[5]:
            v = self.verdict(parts[4], parts[5])
            if v is None:
                return _json(404, {"error": f"no rollout {parts[4]}/{parts[5]} is known to vigil"})
            return _json(200, v)
        return 404, "text/plain", b"not found\n"

    def verdict(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        """From this worker's engine when it holds the agent (the freshest), else from the verdicts topic."""
        v = verdict(self.engine(), namespace, name)
        if v is not None:
            v["source"] = "local"
            return v
        doc = self.view.lookup(namespace, name) if self.view is not None else None
        if doc is None:
            return None
        # answered for the name asked, as the engine does
        return {**doc, "namespace": namespace, "name": name, "source": "view"}

    def _flagger(self, hook: str, body: bytes) -> tuple[int, str, bytes]:
        """Flagger's webhook payload is ``{"name", "namespace", "phase", "metadata": {...}}``; the
        ``metadata`` may name the AgentRollout (``rollout``) when it differs from the Flagger canary."""
        if hook not in ("rollback", "confirm-promotion"):
            return 404, "text/plain", b"not found\n"
        try:
            payload = msgspec.json.decode(body) if body else None
            if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
                raise ValueError("a JSON object with a name is required")
            meta = payload.get("metadata") or {}
            name = str(meta.get("rollout") or payload["name"]) if isinstance(meta, dict) else payload["name"]
            namespace = payload.get("namespace")
        except (msgspec.DecodeError, ValueError) as exc:
            return _json(400, {"error": f"invalid webhook payload: {exc}"})
        v = self.verdict(namespace if isinstance(namespace, str) else None, name)
        if v is None:
            return _json(404, {"error": f"no rollout {namespace}/{name} is known to vigil"})
        # Flagger acts on 200 only: roll back when vigil would, promote only on a healthy verdict.
        go = v["rollback"] if hook == "rollback" else v["healthy"]
        return _json(200 if go else 412, v)

    def _needs_token(self, path: str) -> bool:
        return self.admin_token is not None and path.split("?", 1)[0] in _ADMIN_PATHS

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        assert self.admin_token is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.admin_token.encode())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, path, *_ = lines[0].split(" ")
            length = next((int(v) for k, _, v in (h.partition(":") for h in lines[1:])
                           if k.strip().lower() == "content-length"), 0)
            if not 0 <= length <= _MAX_BODY:
                raise ValueError("body too large")
            body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
            auth = next((v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
                         if k.strip().lower() == "authorization"), "")
            if self._needs_token(path) and not self._authorized(auth):
                status, ctype, body = 401, "application/json", b'{"error": "a bearer token is required"}'
            else:
                status, ctype, body = self._route(method, path, body)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, ctype, body = 400, "text/plain", b"bad request\n"
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
                  412: "Precondition Failed", 503: "Service Unavailable"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
