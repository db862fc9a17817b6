"""Decision notifications: each decision the leader's actuator has carried out (or withheld as an alert), POSTed
as JSON to the webhooks of the agent's AgentRollout (``spec.notifications``) that list its action.

The document sent::

    {"kind": "vigil.decision",
     "rollout": {"namespace": "shop", "name": "support-bot"},
     "agent": "support-bot", "action": "rollback", "version": "v2", "time": "2026-...Z",
     "reason": "escalation_rate is worse ...", "weights": {"v1": 100.0, "v2": 0.0},
     "evidence": [{"metric": ..., "detector": ..., "statistic": ..., "threshold": ..., "pValue": ...,
                   "nCanary": ..., "nStable": ..., "canaryValue": ..., "stableValue": ...}],
     "cluster": {"applied": true, "error": null}}

Only numbers, names and the decision's own reason go out, as in the AgentRollout's status: never the decision's
``examples`` (conversation ids) nor anything of the conversations. ``cluster.applied`` says whether the decision
landed on the cluster; ``cluster.error`` why not. Evidence numbers that are not finite are left out (JSON has no
NaN). Headers: ``Content-Type: application/json``, ``User-Agent: vigil``, ``X-Vigil-Decision-Id`` (the same for
every delivery of one decision, so that a receiver can drop the repeat a new leader may send after a failover),
and, with a ``secretRef``, ``Authorization: Bearer <token>``.

The token is read from the Secret ``secretRef.name`` in the rollout's namespace (the official client's
``CoreV1Api.read_namespaced_secret``), base64-decoded, surrounding whitespace stripped, and kept for 60 s. When
it cannot be read (no Secret, no such key, an empty value, or the controller may not read Secrets: the Helm
value ``rbac.readNotificationSecrets`` grants that) the notification is not sent at all: the failure is logged
and counted, never sent without its credentials.

Delivery: ``urllib.request`` in a worker thread (``asyncio.to_thread``), 5 s timeout per attempt, redirects not
followed (a redirect would carry the token elsewhere), 3 attempts with exponential backoff (1 s, 2 s) on 5xx,
429 and connection errors; another status (4xx) fails at once. Notifications never block nor fail the actuator:
:meth:`Notifier.__call__` only starts a background task and returns; at most ``concurrency`` deliveries run at
once, and beyond ``max_pending`` outstanding ones a new one is dropped (logged, counted failed).

Counters: :attr:`Notifier.sent` and :attr:`Notifier.failed` (one per webhook delivery), exported on ``/metrics``
as ``vigil_notifications_total{outcome="sent"|"failed"}``. Logs never carry a token nor a webhook's path or
query (which often hold a secret of their own): a webhook is named by its scheme, host and port.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import http.client
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from controller.actuators.kubernetes.api import KubeApi
from controller.actuators.kubernetes.errors import KubeError, NotFoundError, TemporaryError
from controller.actuators.kubernetes.status import evidence_json
from controller.config import Notification, Rollout, SecretRef
from controller.contracts.decisions import Decision

__all__ = ["Notifier", "Send", "payload", "urllib_send"]

log = logging.getLogger("vigil.notify")

Send = Callable[[str, bytes, Mapping[str, str], float], int]
"""A blocking HTTP POST ``(url, body, headers, timeout) -> status``; raises ``OSError`` (or an
``http.client.HTTPException``) when no answer came. Run in a worker thread."""

_RETRY_STATUS = frozenset({429})
_RBAC_HINT = ("the controller may not read Secrets: enable the Helm value rbac.readNotificationSecrets=true "
              "(or grant its service account get on secrets in this namespace)")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Answers 3xx as they are: following one would send the body and the token to another URL."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def urllib_send(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST ``body`` to ``url`` with ``urllib.request``; the HTTP status, also for an error status."""
    req = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _opener.open(req, timeout=timeout) as resp:
            resp.read(64 * 1024)  # the answer is not used; reading some lets the connection close cleanly
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(Exception):
            exc.close()
        return int(exc.code)


def where(url: str) -> str:
    """A webhook named without its credentials, path or query (they may hold a secret).

    >>> where("https://user:pw@hooks.example.com:8443/T0/B1/XyZ?token=1")
    'https://hooks.example.com:8443'
    """
    p = urllib.parse.urlsplit(url)
    host = p.hostname or "?"
    return f"{p.scheme}://{host}" + (f":{p.port}" if p.port else "")


def payload(d: Decision, rollout: Rollout, applied: bool, error: str | None,
            default_namespace: str = "default") -> dict[str, Any]:
    """The JSON document a webhook receives for ``d`` (no ``examples``: see the module's docstring)."""
    return {"kind": "vigil.decision",
            "rollout": {"namespace": rollout.namespace or default_namespace, "name": rollout.name or d.agent},
            "agent": d.agent, "action": d.action, "version": d.version, "time": d.time, "reason": d.reason,
            "weights": dict(d.weights), "evidence": [evidence_json(ev) for ev in d.evidence],
            "cluster": {"applied": bool(applied), "error": error}}


def decision_id(d: Decision) -> str:
    """Stable across leaders for one decision (its agent, time, action and version)."""
    key = "\x00".join((d.agent, d.time, d.action, d.version)).encode()
    return hashlib.sha256(key).hexdigest()[:32]


class _Undeliverable(Exception):
    """The notification cannot be sent as configured; retrying will not help."""


class _Retryable(Exception):
    """This attempt failed; a later one may succeed."""


class Notifier:
    """Sends decisions to the rollouts' webhooks in the background; call it as the actuator's ``notify``.

    ``rollout_of(agent)`` gives the agent's current rollout; ``client`` (a ``kubernetes.client.ApiClient``) reads
    the webhooks' Secrets, None when there is no cluster (a ``secretRef`` then fails). ``send`` and ``sleep`` are
    injectable for tests.
    """

    def __init__(self, rollout_of: Callable[[str], Rollout | None], client: Any = None, *,
                 default_namespace: str = "default", send: Send = urllib_send,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, clock: Callable[[], float] = time.monotonic,
                 timeout: float = 5.0, attempts: int = 3, backoff: float = 1.0, concurrency: int = 4,
                 max_pending: int = 256, secret_ttl: float = 60.0) -> None:
        self.rollout_of = rollout_of
        self.api = KubeApi(client, request_timeout=(timeout, timeout)) if client is not None else None
        self.default_namespace = default_namespace
        self.send = send
        self.sleep = sleep
        self.clock = clock
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_pending = max_pending
        self.secret_ttl = secret_ttl
        self._slots = asyncio.Semaphore(concurrency)
        self._tokens: dict[tuple[str, str, str], tuple[float, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        """Notifications a webhook accepted (2xx)."""
        self.failed = 0
        """Notifications not delivered: refused, unreachable after the retries, no token, or dropped."""

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def __call__(self, d: Decision, applied: bool, error: str | None) -> None:
        """Start sending ``d`` to every webhook of its rollout that lists ``d.action``; returns at once.

        Must be called from the event loop (the actuator does)."""
        rollout = self.rollout_of(d.agent)
        hooks = [n for n in (rollout.notifications if rollout else ()) if d.action in n.actions]
        if rollout is None or not hooks:
            return
        namespace = rollout.namespace or self.default_namespace
        body = msgspec.json.encode(payload(d, rollout, applied, error, self.default_namespace))
        ident = decision_id(d)
        loop = asyncio.get_running_loop()
        for hook in hooks:
            if len(self._tasks) >= self.max_pending:
                self.failed += 1
                log.error("dropped the %s notification of %s to %s: %d notifications already pending",
                          d.action, d.agent, where(hook.webhook), len(self._tasks))
                continue
            task = loop.create_task(self._deliver(hook, namespace, body, ident, f"{d.action} of {d.agent}"),
                                    name=f"vigil-notify-{d.agent}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def join(self, timeout: float | None = None) -> bool:
        """Wait for the pending notifications (those started meanwhile too); False if ``timeout`` ran out."""
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while self._tasks:
            left = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    async def aclose(self, grace: float = 2.0) -> None:
        """Give pending notifications ``grace`` seconds, then cancel the rest (counted failed)."""
        if await self.join(grace):
            return
        tasks = set(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if tasks:
            log.warning("%d notification(s) cancelled at shutdown", len(tasks))

    async def _deliver(self, hook: Notification, namespace: str, body: bytes, ident: str, what: str) -> None:
        ok = False
        try:
            async with self._slots:
                ok = await self._attempts(hook, namespace, body, ident, what)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not go unnoticed, nor reach the actuator
            log.exception("unexpected error sending the %s notification to %s", what, where(hook.webhook))
        finally:
            if ok:
                self.sent += 1
            else:
                self.failed += 1

    async def _attempts(self, hook: Notification, namespace: str, body: bytes, ident: str, what: str) -> bool:
        dest = where(hook.webhook)
        why = ""
        for attempt in range(1, self.attempts + 1):
            try:
                headers = {"Content-Type": "application/json", "User-Agent": "vigil", "X-Vigil-Decision-Id": ident}
                if hook.secret_ref is not None:
                    headers["Authorization"] = f"Bearer {await self._token(hook.secret_ref, namespace)}"
                status = await self._post(hook.webhook, body, headers)
                if 200 <= status < 300:
                    log.info("sent the %s notification to %s (HTTP %d)", what, dest, status)
                    return True
                if status < 500 and status not in _RETRY_STATUS:
                    raise _Undeliverable(f"HTTP {status} (not retried)")
                raise _Retryable(f"HTTP {status}")
            except _Undeliverable as exc:
                log.error("notification of %s to %s not sent: %s", what, dest, exc)
                return False
            except _Retryable as exc:
                why = str(exc)
            if attempt < self.attempts:
                delay = self.backoff * 2 ** (attempt - 1)
                log.warning("notification of %s to %s failed (%s), attempt %d of %d; retrying in %g s",
                            what, dest, why, attempt, self.attempts, delay)
                await self.sleep(delay)
        log.error("notification of %s to %s not sent: %s after %d attempts", what, dest, why, self.attempts)
        return False

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            return await asyncio.to_thread(self.send, url, body, headers, self.timeout)
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, refused, reset
            raise _Retryable(f"no answer: {_reason(exc)}") from exc

    async def _token(self, ref: SecretRef, namespace: str) -> str:
        key = (namespace, ref.name, ref.key)
        now = self.clock()
        cached = self._tokens.get(key)
        if cached is not None and now - cached[0] < self.secret_ttl:
            return cached[1]
        name = f"Secret {namespace}/{ref.name}"
        if self.api is None:
            raise _Undeliverable(f"no Kubernetes client to read {name} (secretRef) with")
        try:
            obj = await self.api.get_secret(namespace, ref.name)
        except NotFoundError as exc:
            raise _Undeliverable(f"{name} (secretRef) not found: {exc.message}") from exc
        except TemporaryError as exc:
            raise _Retryable(f"cannot read {name} now: {exc.message}") from exc
        except KubeError as exc:
            hint = f"; {_RBAC_HINT}" if exc.status in (401, 403) else ""
            raise _Undeliverable(f"cannot read {name} (secretRef): {exc.message}{hint}") from exc
        raw = (obj.get("data") or {}).get(ref.key)
        if raw is None:
            raise _Undeliverable(f"{name} has no key {ref.key!r} (secretRef.key)")
        try:
            token = base64.b64decode(raw, validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError, TypeError) as exc:
            raise _Undeliverable(f"{name} key {ref.key!r} is not base64-encoded UTF-8 text") from exc
        if not token or any(c in token for c in "\r\n\0"):
            raise _Undeliverable(f"{name} key {ref.key!r} is empty or spans several lines: not a bearer token")
        self._tokens[key] = (now, token)
        return token


def _reason(exc: BaseException) -> str:
    inner = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return f"{type(inner).__name__}: {inner}" if str(inner) else type(inner).__name__
