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

Delivery: one ``aiohttp.ClientSession`` per :class:`Notifier`, made on the running loop at the first send and
closed by :meth:`Notifier.aclose` (the worker calls it at shutdown); its connections are pooled (at most
``concurrency``, kept alive between notifications). One timeout model, ``aiohttp.ClientTimeout(total=timeout)``:
5 s per attempt for everything (connecting, sending, the answer). Redirects are never followed
(``allow_redirects=False``: a redirect would carry the token elsewhere); a 3xx counts as a failure. Proxies
come from the environment (``HTTP(S)_PROXY``, ``NO_PROXY``: aiohttp's ``trust_env``); cookies are not kept.

Retries: the project's one retry loop (:func:`controller.retry.with_retries`) with :data:`controller.retry.WEBHOOK`
(3 attempts, waits of 1 s then 2 s; a ``Retry-After`` is honoured up to 5 s). What is retried is said by the error's
type: a 5xx, a 429, a timeout, a connection error or a Secret that cannot be read for now raise
:class:`WebhookTemporaryError` (retried); a 4xx, a 3xx or a missing token raise :class:`WebhookPermanentError` (fails
at once). Notifications never block nor fail the actuator: :meth:`Notifier.__call__` only starts a background task
and returns; at most ``concurrency`` deliveries run at once, and beyond ``max_pending`` outstanding ones a new one is
dropped (logged, counted failed).

Counters: :attr:`Notifier.sent` and :attr:`Notifier.failed` (one per webhook delivery), exported on ``/metrics``
as ``vigil_notifications_total{outcome="sent"|"failed"}``. Logs never carry a token nor a webhook's path or
query (which often hold a secret of their own): a webhook is named by its scheme, host and port.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import msgspec

from controller.actuators.kubernetes.api import KubeApi
from controller.actuators.kubernetes.errors import KubeError, NotFoundError
from controller.actuators.kubernetes.errors import TemporaryError as KubeTemporaryError
from controller.actuators.kubernetes.status import evidence_json
from controller.config import Notification, Rollout, SecretRef
from controller.contracts.decisions import Decision
from controller.errors import PermanentError, TemporaryError, VigilError
from controller.retry import WEBHOOK, RetryPolicy, retry_after, with_retries

__all__ = ["Notifier", "WebhookError", "WebhookPermanentError", "WebhookTemporaryError", "check_status", "payload",
           "where"]

log = logging.getLogger("vigil.notify")

_READ_LIMIT = 64 * 1024
"""Bytes of a webhook's answer read (and dropped): enough for any acknowledgement, bounded against a huge one."""
_RBAC_HINT = ("the controller may not read Secrets: enable the Helm value rbac.readNotificationSecrets=true "
              "(or grant its service account get on secrets in this namespace)")


class WebhookError(VigilError):
    """A notification that did not reach its webhook; the message never holds the token, the path or the query."""


class WebhookTemporaryError(WebhookError, TemporaryError):
    """A 5xx or 429, a timeout, a connection error, a token Secret that cannot be read for now: try again."""


class WebhookPermanentError(WebhookError, PermanentError):
    """A 4xx, a redirect (never followed), no usable token: the same request would meet the same answer."""


def check_status(status: int, retry_after: float | None = None) -> None:
    """Nothing for a 2xx; otherwise the error saying whether to try again.

    >>> check_status(204)
    >>> for status in (503, 429, 307, 400):
    ...     try:
    ...         check_status(status)
    ...     except WebhookError as exc:
    ...         print(type(exc).__name__, exc)
    WebhookTemporaryError HTTP 503
    WebhookTemporaryError HTTP 429
    WebhookPermanentError HTTP 307: a redirect, not followed
    WebhookPermanentError HTTP 400 (not retried)
    """
    if 200 <= status < 300:
        return
    if status == 429 or status >= 500:
        raise WebhookTemporaryError(f"HTTP {status}", retry_after=retry_after)
    if 300 <= status < 400:
        raise WebhookPermanentError(f"HTTP {status}: a redirect, not followed")
    raise WebhookPermanentError(f"HTTP {status} (not retried)")


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


class Notifier:
    """Sends decisions to the rollouts' webhooks in the background; call it as the actuator's ``notify``.

    ``rollout_of(agent)`` gives the agent's current rollout; ``client`` (a ``kubernetes.client.ApiClient``) reads
    the webhooks' Secrets, None when there is no cluster (a ``secretRef`` then fails). ``timeout`` bounds each
    attempt (``aiohttp.ClientTimeout(total=...)``), ``retry`` is the policy of the attempts, ``sleep`` their
    clock (a fake one in tests). :meth:`aclose` closes the HTTP client; the notifier then sends nothing more.
    """

    def __init__(self, rollout_of: Callable[[str], Rollout | None], client: Any = None, *,
                 default_namespace: str = "default", retry: RetryPolicy = WEBHOOK,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, clock: Callable[[], float] = time.monotonic,
                 timeout: float = 5.0, concurrency: int = 4, max_pending: int = 256, secret_ttl: float = 60.0) -> None:
        self.rollout_of = rollout_of
        self.api = KubeApi(client, request_timeout=(timeout, timeout)) if client is not None else None
        self.default_namespace = default_namespace
        self.retry = retry
        self.sleep = sleep
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.concurrency = concurrency
        self.max_pending = max_pending
        self.secret_ttl = secret_ttl
        self._slots = asyncio.Semaphore(concurrency)
        self._tokens: dict[tuple[str, str, str], tuple[float, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._closed = False
        self.sent = 0
        """Notifications a webhook accepted (2xx)."""
        self.failed = 0
        """Notifications not delivered: refused, unreachable after the retries, no token, or dropped."""

    @property
    def pending(self) -> int:
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        """:meth:`aclose` has run: the HTTP client is closed and new notifications are dropped."""
        return self._closed

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
            if self._closed or len(self._tasks) >= self.max_pending:
                self.failed += 1
                why = "the notifier is closed" if self._closed else f"{len(self._tasks)} notifications already pending"
                log.error("dropped the %s notification of %s to %s: %s", d.action, d.agent, where(hook.webhook), why)
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
        """Give pending notifications ``grace`` seconds, cancel the rest (counted failed), close the HTTP client."""
        self._closed = True
        try:
            if not await self.join(grace):
                tasks = set(self._tasks)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                log.warning("%d notification(s) cancelled at shutdown", len(tasks))
        finally:
            http, self._http = self._http, None
            if http is not None:
                await http.close()

    def _session(self) -> aiohttp.ClientSession:
        """The one HTTP client, made at the first send on the running loop (aiohttp binds a session to it)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency), timeout=self.timeout,
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=True)
        return self._http

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

        async def attempt() -> int:
            headers = {"Content-Type": "application/json", "User-Agent": "vigil", "X-Vigil-Decision-Id": ident}
            if hook.secret_ref is not None:
                headers["Authorization"] = f"Bearer {await self._token(hook.secret_ref, namespace)}"
            return await self._post(hook.webhook, body, headers)

        def retrying(retry: int, exc: TemporaryError, delay: float) -> None:
            log.warning("notification of %s to %s failed (%s), attempt %d of %s; retrying in %g s",
                        what, dest, exc.message, retry, self.retry.attempts or "unlimited", delay)

        try:
            status = await with_retries(attempt, self.retry, self.sleep, on_retry=retrying)
        except (TemporaryError, PermanentError) as exc:  # temporary: the attempts are used up
            log.error("notification of %s to %s not sent: %s", what, dest, exc.message)
            return False
        log.info("sent the %s notification to %s (HTTP %d)", what, dest, status)
        return True

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """One POST on the shared session: the 2xx status, or the error saying whether to try again."""
        try:
            async with self._session().post(url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.content.read(_READ_LIMIT)  # unused: read so that the connection can be reused
                status, wait = resp.status, retry_after(resp.headers.get("Retry-After"))
        except aiohttp.InvalidURL as exc:  # its text is the URL itself
            raise WebhookPermanentError(f"not a valid webhook URL ({type(exc).__name__})") from exc
        except aiohttp.NonHttpUrlClientError as exc:
            raise WebhookPermanentError("not an http(s) URL") from exc
        except TimeoutError as exc:
            raise WebhookTemporaryError(f"no answer within {self.timeout.total:g} s") from exc
        except (aiohttp.ClientError, OSError) as exc:  # refused, reset, DNS, TLS, a proxy's refusal
            raise WebhookTemporaryError(f"no answer: {_reason(exc, url)}") from exc
        except ValueError as exc:  # e.g. credentials in the URL as well as a secretRef's token
            raise WebhookPermanentError(f"cannot POST there: {_reason(exc, url)}") from exc
        check_status(status, wait)
        return status

    async def _token(self, ref: SecretRef, namespace: str) -> str:
        key = (namespace, ref.name, ref.key)
        now = self.clock()
        cached = self._tokens.get(key)
        if cached is not None and now - cached[0] < self.secret_ttl:
            return cached[1]
        name = f"Secret {namespace}/{ref.name}"
        if self.api is None:
            raise WebhookPermanentError(f"no Kubernetes client to read {name} (secretRef) with")
        try:
            obj = await self.api.get_secret(namespace, ref.name)
        except NotFoundError as exc:
            raise WebhookPermanentError(f"{name} (secretRef) not found: {exc.message}") from exc
        except KubeTemporaryError as exc:
            raise WebhookTemporaryError(f"cannot read {name} now: {exc.message}",
                                        retry_after=exc.retry_after) from exc
        except KubeError as exc:
            hint = f"; {_RBAC_HINT}" if exc.status in (401, 403) else ""
            raise WebhookPermanentError(f"cannot read {name} (secretRef): {exc.message}{hint}") from exc
        raw = (obj.get("data") or {}).get(ref.key)
        if raw is None:
            raise WebhookPermanentError(f"{name} has no key {ref.key!r} (secretRef.key)")
        try:
            token = base64.b64decode(raw, validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError, TypeError) as exc:
            raise WebhookPermanentError(f"{name} key {ref.key!r} is not base64-encoded UTF-8 text") from exc
        if not token or any(c in token for c in "\r\n\0"):
            raise WebhookPermanentError(f"{name} key {ref.key!r} is empty or spans several lines: not a bearer token")
        self._tokens[key] = (now, token)
        return token


def _reason(exc: BaseException, url: str) -> str:
    """``exc`` named by its type and text, the text left out when it holds the URL's path, query or credentials."""
    p = urllib.parse.urlsplit(url)
    secrets = [s for s in (p.path if len(p.path) > 1 else "", p.query, p.username, p.password) if s]
    text = str(exc)
    if any(s in text for s in secrets):
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
