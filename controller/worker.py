"""``vigil run``: the live worker (both pipeline stages and the HTTP endpoints) in one process.

With :class:`KubeMode` it also reads the cluster's AgentRollouts, campaigns for the Lease, and, while it
leads, carries the decisions topic out on the cluster (see :mod:`controller.runtime.actuator`); the pipeline
then acts on no cluster itself, so every replica keeps deciding (its state warm) and only the leader acts.
The leader's actuator also sends each decision it carried out to the rollout's webhooks
(:mod:`controller.notify.webhooks`).

In both modes a :class:`~controller.runtime.verdicts.VerdictView` reads every agent's latest verdict from the
verdicts topic while the pipeline runs, so the verdict endpoints of every replica answer for every agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.actuators.protocol import ClusterBackend
from controller.config import Rollout
from controller.contracts.decisions import Decision
from controller.http.server import HttpServer
from controller.runtime.pipeline import IngestStage, PipelineSettings, PipelineStats, StateStage, run_pipeline
from controller.runtime.verdicts import VerdictView

if TYPE_CHECKING:
    from controller.actuators.kubernetes.api import ApiClient
    from controller.actuators.kubernetes.lease import LeaderElection, LeaseSettings
    from controller.notify.webhooks import Notifier
    from controller.runtime.actuator import Actuator

__all__ = ["KubeMode", "Worker"]

log = logging.getLogger("vigil.worker")


@dataclass(frozen=True)
class KubeMode:
    client: ApiClient
    """The Kubernetes API client (in-cluster credentials in a pod; any API server in tests)."""
    lease: LeaseSettings
    """This replica's Lease identity and timings."""
    watch_namespace: str | None = None
    """Read AgentRollouts in this namespace only; None: in every namespace."""
    refresh_interval: float = 10.0
    """Seconds between two reads of the AgentRollouts."""


class Worker:
    """Runs the pipeline and, when ``http_port`` is not None, the HTTP server, until :meth:`stop`."""

    def __init__(self, settings: PipelineSettings, rollouts: list[Rollout], cluster: ClusterBackend,
                 http_port: int | None = 8080, http_host: str = "127.0.0.1",
                 on_decision: Callable[[Decision], None] | None = None, kube: KubeMode | None = None,
                 admin_token: str | None = None) -> None:
        self.settings = settings
        self.rollouts = rollouts
        self.cluster = cluster
        self.kube = kube
        self.actuator: Actuator | None = None
        self.election: LeaderElection | None = None
        self.notifier: Notifier | None = None
        self.stats = PipelineStats()
        self.stop_event = asyncio.Event()
        self.ingest: IngestStage | None = None
        self.state: StateStage | None = None
        self.user_hook = on_decision
        self.view = VerdictView(settings.bootstrap, settings.verdicts_topic, settings.poll_timeout_ms,
                                options=settings.client_options())
        self.http = None if http_port is None else HttpServer(
            self.stats, lambda: self.state.engine if self.state else None, self.is_ready, http_host, http_port,
            notifications=lambda: self.notifier, view=self.view, admin_token=admin_token)

    def is_ready(self) -> bool:
        """Both stages are ready and the verdicts topic has been read up to where it ended at start."""
        return bool(self.ingest and self.ingest.ready.is_set() and self.state and self.state.ready.is_set()
                    and self.view.ready.is_set())

    def _started(self, ingest: IngestStage, state: StateStage) -> None:
        self.ingest, self.state = ingest, state

    def _decision(self, d: Decision) -> None:
        if self.http is not None:
            self.http.record(d)
        if self.user_hook is not None:
            self.user_hook(d)

    def stop(self) -> None:
        self.stop_event.set()

    async def run(self, handle_signals: bool = False) -> PipelineStats:
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.stop)
        if self.http is not None:
            port = await self.http.start()
            log.info("serving /metrics, /healthz, /readyz and /api/v1 on %s:%d", self.http.host, port)
        try:
            if self.kube is not None:
                return await self._with_view(self._run_kube())
            return await self._with_view(run_pipeline(
                self.settings, self.rollouts, self.cluster, self.stop_event, self.stats,
                on_decision=self._decision, started=self._started))
        finally:
            if self.http is not None:
                await self.http.stop()

    async def _with_view(self, pipeline: Coroutine[Any, Any, PipelineStats]) -> PipelineStats:
        """Run the pipeline with the verdict view beside it; either failing stops both."""
        run = asyncio.create_task(pipeline, name="vigil-pipeline")
        view = asyncio.create_task(self.view.run(self.stop_event), name="vigil-verdicts")
        try:
            await asyncio.wait([run, view], return_when=asyncio.FIRST_EXCEPTION)
            if view.done() and not view.cancelled() and view.exception() is not None:
                self.stop_event.set()
                await asyncio.gather(run, return_exceptions=True)
                view.result()  # the view failed: the worker fails with its error
            return await run
        finally:
            self.stop_event.set()
            await asyncio.gather(run, view, return_exceptions=True)

    async def _run_kube(self) -> PipelineStats:
        from controller.actuators.kubernetes.backend import KubernetesCluster
        from controller.actuators.kubernetes.lease import LeaderElection
        from controller.actuators.kubernetes.rollouts import RolloutSource
        from controller.ingest.aggregator import tenant_caps
        from controller.notify.webhooks import Notifier
        from controller.runtime.actuator import Actuator, ActuatorSettings, target_of

        assert self.kube is not None
        kube = self.kube
        current: dict[str, Rollout] = {}

        def changed(rollouts: list[Rollout]) -> None:
            current.clear()
            current.update({r.agent: r for r in rollouts if r.agent})
            if self.state is not None:
                self.state.engine.set_rollouts(rollouts)
            if self.ingest is not None:
                self.ingest.set_tenants(tenant_caps(rollouts))
            log.info("watching %d AgentRollout(s): %s", len(current), ", ".join(sorted(current)))

        source = RolloutSource(kube.client, changed, kube.watch_namespace, static=self.rollouts,
                               interval=kube.refresh_interval)
        try:
            await source.refresh()
        except Exception as exc:  # noqa: BLE001 - start with the files' rollouts; the loop retries
            log.warning("could not list AgentRollouts at start: %s", exc)
        backend = KubernetesCluster(kube.client, lambda agent: target_of(current[agent], kube.lease.namespace),
                                    instance=kube.lease.identity)
        self.cluster = backend
        self.election = election = LeaderElection(kube.lease, kube.client)
        self.notifier = notifier = Notifier(current.get, kube.client, default_namespace=kube.lease.namespace)
        s = self.settings
        self.actuator = Actuator(
            ActuatorSettings(bootstrap=s.bootstrap, decisions_topic=s.decisions_topic, group=s.group,
                             session_timeout_ms=s.session_timeout_ms, options=s.client_options()),
            backend.apply, current.get, lambda: election.is_leader, election.wait_leader, notify=notifier,
            history=backend.rollback_history)
        tasks = [asyncio.create_task(source.run(self.stop_event), name="vigil-rollouts"),
                 asyncio.create_task(election.run(), name="vigil-lease"),
                 asyncio.create_task(self.actuator.run(self.stop_event), name="vigil-actuator")]
        try:
            return await run_pipeline(s, source.current, None, self.stop_event, self.stats,
                                      on_decision=self._decision, started=self._started, track_mode=False)
        finally:
            try:
                self.stop_event.set()
                with contextlib.suppress(Exception):
                    await election.release()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            finally:  # the actuator has stopped, so nothing is notified after this: close the webhooks' HTTP client
                await notifier.aclose()
