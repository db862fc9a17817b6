"""``vigil run``: the live worker (both pipeline stages and the HTTP endpoints) in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from controller.cluster import ClusterBackend
from controller.config import Rollout
from controller.decisions import Decision
from controller.http import HttpServer
from controller.pipeline import IngestStage, PipelineSettings, PipelineStats, StateStage, run_pipeline

__all__ = ["Worker"]

log = logging.getLogger("vigil.worker")


class Worker:
    """Runs the pipeline and, when ``http_port`` is not None, the HTTP server, until :meth:`stop`."""

    def __init__(self, settings: PipelineSettings, rollouts: list[Rollout], cluster: ClusterBackend,
                 http_port: int | None = 8080, http_host: str = "127.0.0.1",
                 on_decision: Callable[[Decision], None] | None = None) -> None:
        self.settings = settings
        self.rollouts = rollouts
        self.cluster = cluster
        self.stats = PipelineStats()
        self.stop_event = asyncio.Event()
        self.ingest: IngestStage | None = None
        self.state: StateStage | None = None
        self.user_hook = on_decision
        self.http = None if http_port is None else HttpServer(
            self.stats, lambda: self.state.engine if self.state else None, self.is_ready, http_host, http_port)

    def is_ready(self) -> bool:
        return bool(self.ingest and self.ingest.ready.is_set() and self.state and self.state.ready.is_set())

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
            return await run_pipeline(self.settings, self.rollouts, self.cluster, self.stop_event, self.stats,
                                      on_decision=self._decision, started=self._started)
        finally:
            if self.http is not None:
                await self.http.stop()
