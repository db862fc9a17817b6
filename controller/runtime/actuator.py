"""Kubernetes mode: every replica decides, one leader acts.

The state stages of all replicas share one consumer group: each decides for the agents of its partitions
and publishes every decision on the decisions topic (one partition, so one order). The replica holding the
Lease reads that topic in its own consumer group (``<group>.actuator``) and carries each decision out on the
cluster, committing its offset only once it has landed, or has failed for good (the AgentRollout's status
and an Event then say so). A leader that dies or loses the Lease mid-rollback leaves the offset
uncommitted, and the next leader carries the same decision out again: actions are idempotent (weights set
to a value, a template restored), so a repeat is harmless and a rollback is never lost. A decision whose
writes fail for now (a :class:`~controller.errors.TemporaryError`: conflicts, 5xx, timeouts, each call having
already retried itself) is retried whole through the project's one retry loop (:mod:`controller.retry`, policy
``ActuatorSettings.retry``), by default until it lands or leadership ends; a
:class:`~controller.errors.PermanentError` fails it for good at once.

The rollback policy is applied here, where the cluster is touched, by the guards of
:mod:`controller.policy.guards` (the ones ``vigil replay`` applies): within ``cooldown`` of the last rollback
of an agent, or after ``maxActions`` rollbacks of its resource, a rollback is reported as an alert instead
of carried out. The counts live in the AgentRollout's status (``rollbacksApplied``, ``lastRollbackTime``): a
leader reads them (``history``) the first time it meets an agent's rollback, then keeps them up to date as
it carries rollbacks out.

Once a decision has landed, or failed for good, it is handed to ``notify(decision, applied, error)`` (the
webhooks of :mod:`controller.notify.webhooks`): the decision as carried out (a withheld rollback as its alert), whether
it was applied, and why not. Only the leader gets there, so a notification goes out once (again only when a
new leader repeats a decision whose offset was not committed). ``notify`` must return at once; whatever it
raises is logged and never stops the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiokafka import TopicPartition

from controller.actuators.kubernetes.errors import KubeError
from controller.actuators.kubernetes.target import KubeTarget
from controller.config import RollbackPolicy, Rollout
from controller.contracts.decisions import Decision, decode
from controller.errors import PermanentError, TemporaryError
from controller.policy.guards import RollbackGuard
from controller.retry import DECISION, RetryPolicy, with_retries
from controller.runtime.kafka import group_consumer

__all__ = ["Actuator", "ActuatorSettings", "target_of"]

log = logging.getLogger("vigil.actuator")


class _NotLeading(Exception):
    """Raised before a try when the run has stopped or this replica no longer leads: the decision is left
    (uncommitted) to the next leader. Not an error, so never retried."""


def target_of(rollout: Rollout, default_namespace: str = "default") -> KubeTarget:
    """Where ``rollout`` lives on the cluster."""
    assert rollout.agent and rollout.stable and rollout.canary, "a rollout on a cluster names its versions"
    return KubeTarget(
        namespace=rollout.namespace or default_namespace, name=rollout.name or rollout.agent, agent=rollout.agent,
        stable_version=rollout.stable.version, canary_version=rollout.canary.version,
        stable_deployment=rollout.stable.deployment, canary_deployment=rollout.canary.deployment,
        stable_service=rollout.stable.service, canary_service=rollout.canary.service,
        router=rollout.traffic.router,
        route_name=rollout.traffic.name, istio_route=rollout.traffic.route,
        total_replicas=rollout.traffic.replicas, scale_canary_to_zero=rollout.rollback.scale_canary_to_zero)


@dataclass(frozen=True)
class ActuatorSettings:
    bootstrap: str
    """Kafka bootstrap servers."""
    decisions_topic: str = "vigil.decisions"
    """The topic the state stages publish decisions on."""
    group: str = "vigil"
    """Consumer group prefix: the actuator reads in ``<group>.actuator``."""
    session_timeout_ms: int = 6000
    """Consumer session timeout."""
    options: dict[str, Any] = field(default_factory=dict)
    """aiokafka security keyword arguments (see ``PipelineSettings.client_options``)."""
    retry: RetryPolicy = DECISION
    """How a decision whose writes failed for now is retried (the project's one retry loop): by default until it
    lands or leadership ends, waiting 1 s, doubling up to 30 s. A policy with a bounded number of attempts gives
    the decision up once they are used: it then fails for good (counted, notified, its offset committed)."""


class Actuator:
    """Carries out the decisions topic on the cluster while ``is_leader()`` holds."""

    def __init__(self, settings: ActuatorSettings, apply: Callable[[Decision], Awaitable[None]],
                 rollout_of: Callable[[str], Rollout | None], is_leader: Callable[[], bool],
                 wait_leader: Callable[[], Awaitable[None]], *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 notify: Callable[[Decision, bool, str | None], None] | None = None,
                 history: Callable[[str], Awaitable[tuple[int, float | None]]] | None = None) -> None:
        self.settings = settings
        self.apply = apply
        self.rollout_of = rollout_of
        self.is_leader = is_leader
        self.wait_leader = wait_leader
        self.clock = clock
        self.sleep = sleep
        self.notify = notify
        """Told of every decision carried out or failed for good: ``(decision, applied, error)``."""
        self.history = history
        """Rollbacks already carried out for an agent's resource, and the event time of the last (its status)."""
        self.guards = RollbackGuard(self._policy_of)
        """The rollback policy's guards (:mod:`controller.policy.guards`) and their counts."""
        self.applied = 0
        self.failed = 0

    def _policy_of(self, agent: str) -> RollbackPolicy | None:
        rollout = self.rollout_of(agent)
        return None if rollout is None else rollout.rollback

    @property
    def rollbacks(self) -> dict[str, tuple[int, float | None]]:
        """Per agent: rollbacks carried out and the event time of the last one (the guards' counts)."""
        return self.guards.rollbacks

    @property
    def withheld(self) -> int:
        """Rollbacks the policy turned into alerts."""
        return self.guards.withheld

    def guard(self, d: Decision) -> Decision:
        """``d``, or an alert in its place when the rollback policy withholds it."""
        return self.guards.check(d)

    async def carry_out(self, d: Decision, stop: asyncio.Event) -> bool:
        """Apply ``d`` until it lands or fails for good: True; False when leadership or the run ends first."""
        if d.action == "rollback" and not self.guards.knows(d.agent) and self.history is not None:
            try:
                self.guards.remember(d.agent, *await self.history(d.agent))
            except KubeError as exc:  # unknown history must not block a rollback: count from here
                log.warning("no rollback history for %s (%s); counting from now", d.agent, exc)
                self.guards.remember(d.agent, 0, None)
        d = self.guard(d)

        async def attempt() -> None:
            if stop.is_set() or not self.is_leader():
                raise _NotLeading
            await self.apply(d)

        def retrying(retry: int, exc: TemporaryError, delay: float) -> None:  # conflicts, 5xx, timeouts
            log.warning("%s of %s not applied yet (attempt %d), retrying in %.0f s: %s", d.action, d.agent, retry,
                        delay, exc)

        try:
            await with_retries(attempt, self.settings.retry, self.sleep, on_retry=retrying)
        except _NotLeading:
            return False
        except (PermanentError, TemporaryError) as exc:  # temporary: a bounded policy's attempts are used up
            self.failed += 1
            log.error("cannot carry out %s of %s (%s): %s", d.action, d.agent, d.version, exc)
            self._notify(d, False, exc.message)
            return True
        except Exception as exc:  # a bug must not stop the stream: report it and go on with the next decision
            self.failed += 1
            log.exception("unexpected error carrying out %s of %s", d.action, d.agent)
            self._notify(d, False, f"unexpected error: {type(exc).__name__}")
            return True
        self.guards.carried_out(d)
        self.applied += 1
        self._notify(d, True, None)
        return True

    def _notify(self, d: Decision, applied: bool, error: str | None) -> None:
        if self.notify is None:
            return
        try:
            self.notify(d, applied, error)
        except Exception:  # notifications never fail the actuator
            log.exception("could not hand the %s of %s to the notifier", d.action, d.agent)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            waiting = asyncio.ensure_future(self.wait_leader())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for f in (waiting, stopping):
                f.cancel()
            if stop.is_set():
                return
            log.info("leading: carrying out decisions from %s", self.settings.decisions_topic)
            await self._lead(stop)

    async def _lead(self, stop: asyncio.Event) -> None:
        s = self.settings
        consumer = group_consumer(s.bootstrap, f"{s.group}.actuator", s.decisions_topic, options=s.options,
                                  session_timeout_ms=s.session_timeout_ms)
        await consumer.start()
        try:
            while not stop.is_set() and self.is_leader():
                batch = await consumer.getmany(timeout_ms=200, max_records=100)
                for tp, records in batch.items():
                    for r in records:
                        try:
                            d = decode(r.value)
                        except (msgspec.DecodeError, TypeError):
                            log.error("skipped an undecodable decision at %s/%d/%d", tp.topic, tp.partition, r.offset)
                            await consumer.commit({tp: r.offset + 1})
                            continue
                        if not await self.carry_out(d, stop):
                            return  # not committed: the next leader carries it out
                        await consumer.commit({TopicPartition(tp.topic, tp.partition): r.offset + 1})
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

