"""The worker's HTTP endpoints: Prometheus metrics, health, and a read-only view of decisions.

* ``GET /metrics``: Prometheus exposition, read from live state at scrape time by :class:`VigilCollector`;
* ``GET /healthz``: the process serves; ``GET /readyz``: both stages have joined their groups and state is restored;
* ``GET /api/v1/decisions``: the most recent decisions (newest last), as JSON;
* ``GET /api/v1/agents``: per agent, the rollout phase, weights and window counts, of the first canary and of
  every canary judged (``canaries``), with the canary events not judged (these two need
  ``Authorization: Bearer <VIGIL_ADMIN_TOKEN>`` when the worker has an admin token, else 401 with
  ``WWW-Authenticate: Bearer realm="vigil"``);
* ``GET /api/v1/verdict/{namespace}/{name}``: the verdict for Argo Rollouts' Web metric provider;
* ``POST /api/v1/flagger/rollback`` and ``POST /api/v1/flagger/confirm-promotion``: Flagger's webhooks
  (see :mod:`controller.engine.verdict`).

The verdict and Flagger endpoints answer from the worker's engine when it holds the agent (``"source":
"local"``), else from the verdicts topic read by every replica (``"source": "view"``, see
:mod:`controller.runtime.verdicts`), else 404: behind a Service, any replica answers for every agent.

Served by :mod:`aiohttp.web`: HTTP/1.1 with keep-alive and chunked bodies, ``HEAD`` wherever ``GET`` is
served, 405 with ``Allow`` for another method, request bodies up to 64 KiB (413 above), and a JSON 500 (with
the traceback in the log) when a handler fails.
"""

from __future__ import annotations

import hmac
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from controller.contracts.decisions import Decision
from controller.engine.core import CanaryRun, Engine
from controller.engine.verdict import verdict
from controller.runtime.pipeline import PipelineStats

if TYPE_CHECKING:
    from controller.runtime.verdicts import VerdictView

__all__ = ["HttpServer", "VigilCollector", "agents_view"]

log = logging.getLogger("vigil.http")


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
        yield CounterMetricFamily("vigil_checkpoints_unreadable", "Changelog records on restore that were not a "
                                  "readable checkpoint (the agent started afresh)", value=s.checkpoints_unreadable)
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
        judged = GaugeMetricFamily("vigil_canary_versions", "Canary versions of each agent judged now",
                                   labels=["agent"])
        unjudged = CounterMetricFamily("vigil_unjudged_canary_events", "Canary events of versions without an "
                                       "analysis (not yet admitted, or refused at the cap)", labels=["agent"])
        refused = CounterMetricFamily("vigil_refused_canary_versions", "Canary versions refused an analysis "
                                      "because the agent already had as many as it may judge", labels=["agent"])
        for agent, st in sorted(engine.agents.items()):
            late.add_metric([agent], st.window.late_events)
            judged.add_metric([agent], len(st.runs))
            unjudged.add_metric([agent], st.unjudged_events)
            refused.add_metric([agent], st.refused)
            for version, run in st.runs.items():
                weight.add_metric([agent, version], run.policy.weight)
                for name, t in run.analysis.tests.items():
                    stat.add_metric([agent, version, name], t.statistic)
                    thr.add_metric([agent, version, name], t.threshold)
        yield from (late, weight, stat, thr, judged, unjudged, refused)


def agents_view(engine: Engine | None) -> dict[str, Any]:
    if engine is None:
        return {}
    out: dict[str, Any] = {}
    for agent, st in engine.agents.items():
        entry: dict[str, Any] = {"late_events": st.window.late_events}
        runs = [_run_view(run) for run in st.runs.values()]
        if runs:
            # the first canary's fields at the top, as with one canary; every canary's in "canaries"
            entry.update(stable=st.runs[runs[0]["canary"]].policy.stable, **runs[0], canaries=runs)
        if st.candidates or st.unjudged_events:
            entry.update(unjudged_events=st.unjudged_events, refused_versions=st.refused,
                         candidates={v: int(c[0]) for v, c in st.candidates.items()})
        out[agent] = entry
    return out


def _run_view(run: CanaryRun) -> dict[str, Any]:
    return {"canary": run.canary, "phase": run.policy.phase, "weights": run.policy.weights,
            "window": {k: dict(zip(("n_canary", "harm_canary", "n_stable", "harm_stable"), v, strict=True))
                       for k, v in run.analysis.window_view().items()}}


_MAX_BODY = 64 * 1024
# what generate_latest writes (prometheus_client's CONTENT_TYPE_LATEST names another format in newer releases)
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, doc: object, headers: dict[str, str] | None = None) -> web.Response:
    # bytes and a bare content type: "application/json" exactly, as before (json_response adds a charset)
    return web.Response(status=status, body=msgspec.json.encode(doc), content_type="application/json",
                        headers=headers)


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=text.encode(), content_type="text/plain", headers=headers)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The router's 404 and 405 keep the short plain bodies they had (the 405 with its ``Allow``); an oversized
    body and a failing handler answer in JSON, as the API does, rather than with aiohttp's HTML pages."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _text(404, "not found\n")
    except web.HTTPMethodNotAllowed as exc:
        return _text(405, "method not allowed\n", {"Allow": exc.headers["Allow"]})
    except web.HTTPRequestEntityTooLarge:
        return _json(413, {"error": f"the request body is over {_MAX_BODY // 1024} KiB"})
    except web.HTTPException:
        raise
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return _json(500, {"error": "internal error, see the worker's log"})


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
        self._runner: web.AppRunner | None = None

    def record(self, decision: Decision) -> None:
        self.decisions.append(decision)

    async def start(self) -> int:
        # no access log: probes and scrapes would write a line every few seconds; stop() waits at most 5 s for
        # requests in flight, so a slow client cannot hold up the worker's shutdown
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _app(self) -> web.Application:
        # GET routes answer HEAD too (aiohttp's allow_head); a known path with another method gets 405 + Allow
        app = web.Application(client_max_size=_MAX_BODY, middlewares=[_errors])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/api/v1/decisions", self._admin(self._decisions))
        app.router.add_get("/api/v1/agents", self._admin(self._agents))
        app.router.add_get("/api/v1/verdict/{namespace}/{name}", self._verdict)
        for hook in ("rollback", "confirm-promotion"):
            app.router.add_post(f"/api/v1/flagger/{hook}", self._flagger_hook(hook))
        return app

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": _METRICS_TYPE})

    async def _healthz(self, _: web.Request) -> web.Response:
        return _text(200, "ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        return _text(200, "ready\n") if self.ready() else _text(503, "not ready\n")

    async def _decisions(self, _: web.Request) -> web.Response:
        return _json(200, list(self.decisions))

    async def _agents(self, _: web.Request) -> web.Response:
        return _json(200, agents_view(self.engine()))

    async def _verdict(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        v = self.verdict(namespace, name)
        if v is None:
            return _json(404, {"error": f"no rollout {namespace}/{name} is known to vigil"})
        return _json(200, v)

    def verdict(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        """From this worker's engine when it holds the agent (the freshest), else from the verdicts topic."""
        local = verdict(self.engine(), namespace, name)
        if local is not None:
            v: dict[str, Any] = msgspec.to_builtins(local)
            v["source"] = "local"
            return v
        doc = self.view.lookup(namespace, name) if self.view is not None else None
        if doc is None:
            return None
        # answered for the name asked, as the engine does
        return {**doc, "namespace": namespace, "name": name, "source": "view"}

    def _flagger_hook(self, hook: str) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            # read() enforces client_max_size, chunked bodies included (413 through _errors)
            return self._flagger(hook, await request.read())
        return handle

    def _flagger(self, hook: str, body: bytes) -> web.Response:
        """Flagger's webhook payload is ``{"name", "namespace", "phase", "metadata": {...}}``; the
        ``metadata`` may name the AgentRollout (``rollout``) when it differs from the Flagger canary."""
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

    def _admin(self, handler: Handler) -> Handler:
        """Guards ``handler`` itself rather than a list of paths, so no spelling of the path gets around it."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.admin_token is not None and not self._authorized(request.headers.get("Authorization", "")):
                return _json(401, {"error": "a bearer token is required"},
                             {"WWW-Authenticate": 'Bearer realm="vigil"'})
            return await handler(request)
        return guarded

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.strip().partition(" ")
        assert self.admin_token is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.admin_token.encode())
