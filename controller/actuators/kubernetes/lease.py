"""Leader election on a ``coordination.k8s.io/v1`` Lease: of the chart's replicas, only the leader acts.

Every replica runs :meth:`LeaderElection.run`. A follower reads the Lease every ``retry_period``; it takes
the Lease when nobody holds it, or when the holder's ``renewTime + leaseDurationSeconds`` is past. The
leader renews it every ``retry_period``. All writes are PUTs carrying the ``resourceVersion`` that was read
(a create for a missing Lease), so of two replicas racing for the same version the API server lets exactly
one through and answers 409 to the other.

Safety rests on one rule: the leader stops acting ``renew_deadline`` seconds after the ``renewTime`` of its
last successful write, while the others may take over only ``lease_duration`` seconds after it. The gap
(``lease_duration - renew_deadline``, 5 s by default) absorbs the skew between the replicas' clocks and the
latency of the step-down itself; :class:`LeaseSettings` refuses a deadline that leaves no gap. Whoever acts
on the cluster checks :attr:`LeaderElection.is_leader` right before each write: it turns false at the
deadline itself, even while a renewal is still hanging on the API server.

Times on the Lease are RFC 3339 with exactly six fraction digits (``MicroTime``,
``2026-11-26T18:00:00.000000Z``), which the API server requires. The client's ``V1Lease`` model would write
``2026-11-26T18:00:00+00:00`` whenever the microseconds are zero (``datetime.isoformat``), and even a dict
body is turned into that model by its ``replace_namespaced_lease``; so the Lease travels as plain JSON
through the ``ApiClient``'s own request path, as its dynamic client does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import urllib3.exceptions
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from controller.config import ConfigError

__all__ = ["Clock", "LeaderElection", "LeaseSettings", "SystemClock"]

log = logging.getLogger(__name__)

Lease = dict[str, Any]
_COLLECTION = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
_ITEM = _COLLECTION + "/{name}"


@dataclass(frozen=True, kw_only=True)
class LeaseSettings:
    """Which Lease the replicas compete for, under which name this one competes, and how fast."""

    namespace: str
    """Namespace of the Lease (the release's own)."""
    name: str = "vigil-leader"
    """Name of the Lease, the same for every replica of one release."""
    identity: str
    """This replica's ``holderIdentity``: its pod name, unique among the candidates."""
    lease_duration: int = 15
    """Whole seconds after the last renewal before another replica may take the Lease (``leaseDurationSeconds``)."""
    renew_deadline: float = 10.0
    """Seconds the leader keeps acting without a successful renewal; less than ``lease_duration``."""
    retry_period: float = 2.0
    """Seconds between two attempts to acquire or renew the Lease; less than ``renew_deadline``."""

    def __post_init__(self) -> None:
        for field in ("namespace", "name", "identity"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                raise ConfigError(field, f"must be a non-empty string, got {value!r}")
        d = self.lease_duration
        # the Lease stores an integer: a fractional duration would be cut short for everyone else
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ConfigError("lease_duration", f"must be a whole number of seconds >= 1, got {d!r}")
        for field in ("renew_deadline", "retry_period"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(field, f"must be a positive number of seconds, got {value!r}")
        if self.renew_deadline >= d:
            raise ConfigError("renew_deadline", f"must be less than lease_duration ({d} s), so that the leader "
                                                f"stops acting before the Lease can expire; got {self.renew_deadline}")
        if self.retry_period >= self.renew_deadline:
            raise ConfigError("retry_period", f"must be less than renew_deadline ({self.renew_deadline} s), or "
                                              f"a failed renewal is never retried in time; got {self.retry_period}")


class Clock(Protocol):
    """Time as the election sees it; tests substitute a fake one."""

    def now(self) -> datetime:
        """Wall time, timezone-aware: written on the Lease and compared with the other replicas' stamps."""

    def monotonic(self) -> float:
        """Seconds that never jump back: times this replica's own renew deadline."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def format_time(t: datetime) -> str:
    """A Lease time (``MicroTime``): UTC, always six fraction digits.

    >>> format_time(datetime(2026, 11, 26, 18, 0, tzinfo=UTC))
    '2026-11-26T18:00:00.000000Z'
    """
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: object) -> datetime | None:
    """A time read from a Lease; ``None`` when absent or unreadable (the Lease then counts as expired)."""
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _status(exc: BaseException) -> int | None:
    # 404 and 409 steer the election; everything else is a failed attempt, retried on the next period.
    # (Private on purpose: controller.actuators.kubernetes.errors will take this over.)
    return exc.status if isinstance(exc, ApiException) else None


def _spec(lease: Lease | None) -> dict[str, Any]:
    return dict((lease or {}).get("spec") or {})


class LeaderElection:
    """Campaign for the Lease of ``settings`` and tell whether this replica is the one that may act.

    ``run()`` campaigns until it is cancelled; ``release()`` ends it on shutdown and hands the Lease over.
    ``on_started_leading`` and ``on_stopped_leading`` are called on the event loop, each time leadership
    starts or ends: they must return promptly (start or cancel a task, do not await the work in them).
    """

    def __init__(self, settings: LeaseSettings, api_client: ApiClient, *,
                 on_started_leading: Callable[[], None] | None = None,
                 on_stopped_leading: Callable[[], None] | None = None,
                 clock: Clock | None = None) -> None:
        self.settings = settings
        self._api = api_client
        self._clock: Clock = clock or SystemClock()
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._lease: Lease | None = None
        """The Lease as last read or written, with its resourceVersion: the base of the next write."""
        self._leading = False
        self._acting_until = float("-inf")
        self._leader_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._released = False

    # -- what the rest of the controller asks --------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Whether this replica may act on the cluster now. False from the renew deadline on, even if the loop
        has not noticed yet, so a caller checking it before each write never acts on an expired term."""
        return self._leading and self._clock.monotonic() < self._acting_until

    @property
    def holder(self) -> str | None:
        """The ``holderIdentity`` last seen on the Lease (``None``: unknown, or nobody)."""
        return _spec(self._lease).get("holderIdentity") or None

    async def wait_leader(self) -> None:
        """Return once this replica leads (at once if it does); check :attr:`is_leader` before acting anyway."""
        await self._leader_event.wait()

    # -- the campaign ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Acquire, then renew, the Lease until cancelled (or released); never returns by itself."""
        if self._released:
            return  # released before this task got to run: shutting down already
        if self._task is not None:
            raise RuntimeError("LeaderElection.run() is already running (it can be started once)")
        self._task = asyncio.current_task()
        try:
            while True:
                wait = await self._attempt()
                await self._clock.sleep(wait)
        finally:
            self._step_down("the election stopped")

    async def _attempt(self) -> float:
        """One try at acquiring or renewing; the seconds to wait before the next one."""
        period = self.settings.retry_period
        if self._leading and not self.is_leader:
            # the watchdog is due at this very instant too; whichever runs first, the term ends here
            self._step_down(self._missed_deadline)
        try:
            if self._leading:
                await self._renew()
                return period
            return await self._try_acquire()
        except Exception as exc:  # noqa: BLE001 - the campaign outlives any one failed call
            if _status(exc) is None and not _is_transport_error(exc):
                log.exception("lease %s: unexpected error", self._ref)
            else:
                log.warning("lease %s: %s failed: %s", self._ref, "renewal" if self._leading else "acquisition",
                            _describe(exc))
            return period

    async def _try_acquire(self) -> float:
        period = self.settings.retry_period
        lease = await self._get()
        if lease is None:
            mono, body = self._stamped(None, new_term=True)
            try:
                self._lease = await self._send("POST", body)
            except ApiException as exc:
                if _status(exc) != 409:
                    raise
                log.info("lease %s: another replica created it first", self._ref)
                return period
            self._start_leading(mono)
            return period
        self._lease = lease
        holder = self.holder
        if holder is not None and holder != self.settings.identity:
            remaining = self._expires_in(lease)
            if remaining > 0:
                # wake at the expiry itself rather than up to a period later: a dead leader is replaced sooner
                return min(period, remaining)
            log.info("lease %s: taking over from %s, whose lease expired %.1f s ago", self._ref, holder, -remaining)
        # free, expired, or still ours from a term that ended (we stepped down, or this pod restarted): the
        # resourceVersion makes the write fail if anyone else wrote in between
        mono, body = self._stamped(lease, new_term=True)
        try:
            self._lease = await self._send("PUT", body)
        except ApiException as exc:
            if _status(exc) != 409:
                raise
            log.info("lease %s: another replica took it first", self._ref)
            return period
        self._start_leading(mono)
        return period

    async def _renew(self) -> None:
        try:
            mono, body = self._stamped(self._lease, new_term=False)
            lease = await self._send("PUT", body)
        except ApiException as exc:
            if _status(exc) == 404:
                self._step_down("the lease was deleted")
                return
            if _status(exc) != 409:
                raise
            # our copy is stale: either someone else wrote, or an earlier renewal of ours landed after all
            fresh = await self._get()
            self._lease = fresh
            if fresh is None or self.holder != self.settings.identity:
                self._step_down(f"the lease is now held by {self.holder or 'nobody'}")
                return
            mono, body = self._stamped(fresh, new_term=False)
            lease = await self._send("PUT", body)
        self._lease = lease
        if not self.is_leader:
            # the deadline passed while the write was in flight: the term is over all the same (the watchdog
            # ends it), and the next attempt starts a new one, with its own acquireTime
            return
        self._acting_until = mono + self.settings.renew_deadline

    def _stamped(self, lease: Lease | None, *, new_term: bool) -> tuple[float, Lease]:
        """The Lease to write, renewed now in our name; and the monotonic time of that ``renewTime``, from
        which the renew deadline runs."""
        s = self.settings
        mono, now = self._clock.monotonic(), format_time(self._clock.now())
        if lease is None:
            return mono, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": {"holderIdentity": s.identity, "leaseDurationSeconds": s.lease_duration,
                         "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
            }
        spec = _spec(lease)
        if new_term:
            spec["acquireTime"] = now
            if spec.get("holderIdentity") != s.identity:
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(holderIdentity=s.identity, leaseDurationSeconds=s.lease_duration, renewTime=now)
        return mono, {**lease, "spec": spec}

    def _expires_in(self, lease: Lease) -> float:
        """Seconds until the holder's term runs out, by our wall clock (zero or less: it has)."""
        spec = _spec(lease)
        renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
        if renewed is None:
            return 0.0  # a Lease nobody can date must not block the election for ever
        duration = spec.get("leaseDurationSeconds") or self.settings.lease_duration
        return (renewed + timedelta(seconds=duration) - self._clock.now()).total_seconds()

    # -- leadership ----------------------------------------------------------------------------------

    def _start_leading(self, mono: float) -> None:
        self._acting_until = mono + self.settings.renew_deadline
        if self._clock.monotonic() >= self._acting_until:
            log.warning("lease %s: acquired, but too late to act on (the write took longer than renew_deadline)",
                        self._ref)
            return
        self._leading = True
        self._leader_event.set()
        self._watchdog = asyncio.create_task(self._watch_deadline(), name=f"lease-deadline-{self.settings.name}")
        log.info("lease %s: %s started leading", self._ref, self.settings.identity)
        _notify(self._on_started, "on_started_leading")

    async def _watch_deadline(self) -> None:
        # apart from the renewal loop, so that a renewal hanging on the API server cannot delay the step-down
        while self._leading:
            remaining = self._acting_until - self._clock.monotonic()
            if remaining <= 0:
                self._step_down(self._missed_deadline)
                return
            await self._clock.sleep(remaining)

    @property
    def _missed_deadline(self) -> str:
        return f"no successful renewal within renew_deadline ({self.settings.renew_deadline} s)"

    def _step_down(self, why: str) -> None:
        if not self._leading:
            return
        self._leading = False
        self._acting_until = float("-inf")
        self._leader_event.clear()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
        log.warning("lease %s: %s stopped leading: %s", self._ref, self.settings.identity, why)
        _notify(self._on_stopped, "on_stopped_leading")

    async def release(self) -> None:
        """Stop the campaign and leadership, then clear ``holderIdentity`` so that a successor takes over on
        its next attempt instead of waiting for the Lease to expire. For shutdown: there is no rejoining."""
        self._released = True
        # no await between the step-down and the cancellation: the campaign cannot start a new term in between
        self._step_down("released")
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])  # not `await task`: that would raise its CancelledError in our caller
        # read afresh rather than trust our copy: a write of the cancelled campaign may have landed meanwhile;
        # a second round after a 409, in case one lands between this read and the release
        for _ in range(2):
            try:
                lease = await self._get()
                self._lease = lease
                if lease is None or self.holder != self.settings.identity:
                    return
                spec = _spec(lease)
                spec.pop("holderIdentity", None)
                now = format_time(self._clock.now())
                # leaseDurationSeconds 1 as client-go does, for candidates that look only at the expiry
                spec.update(renewTime=now, acquireTime=now, leaseDurationSeconds=1)
                self._lease = await self._send("PUT", {**lease, "spec": spec})
                log.info("lease %s: released by %s", self._ref, self.settings.identity)
                return
            except Exception as exc:  # noqa: BLE001 - shutting down: the Lease expires by itself anyway
                if _status(exc) != 409:
                    log.warning("lease %s: could not release it (%s); it expires within %d s", self._ref,
                                _describe(exc), self.settings.lease_duration)
                    return

    # -- the API -------------------------------------------------------------------------------------

    @property
    def _ref(self) -> str:
        return f"{self.settings.namespace}/{self.settings.name}"

    async def _get(self) -> Lease | None:
        try:
            return await self._send("GET", None)
        except ApiException as exc:
            if _status(exc) == 404:
                return None
            raise

    async def _send(self, method: str, body: Lease | None) -> Lease:
        return await asyncio.to_thread(self._send_blocking, method, body)

    def _send_blocking(self, method: str, body: Lease | None) -> Lease:
        s, api = self.settings, self._api
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = api.param_serialize(
            method=method, resource_path=_COLLECTION if method == "POST" else _ITEM,
            path_params={"namespace": s.namespace, "name": s.name}, header_params=headers, body=body,
            auth_settings=["BearerToken"])
        # bounded, so that a thread left behind by a cancelled call does not linger
        response = api.call_api(*request, _request_timeout=s.renew_deadline)
        response.read()  # type: ignore[no-untyped-call]  # urllib3's response is untyped
        text = response.data.decode("utf-8", errors="replace") if response.data else ""
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=text, data=None)
        out = json.loads(text)
        if not isinstance(out, dict):
            raise ValueError(f"expected a Lease, got {type(out).__name__}")
        return out


def _notify(callback: Callable[[], None] | None, what: str) -> None:
    if callback is None:
        return
    try:
        callback()
    except Exception:  # noqa: BLE001 - a faulty callback must not break the election itself
        log.exception("%s raised", what)


def _is_transport_error(exc: BaseException) -> bool:
    return isinstance(exc, urllib3.exceptions.HTTPError | TimeoutError | ConnectionError)


def _describe(exc: BaseException) -> str:
    status = _status(exc)
    if status is not None:
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    return f"{type(exc).__name__}: {exc}"

