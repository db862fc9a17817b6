"""What can go wrong talking to the API server, sorted by what the caller should do about it.

::

    KubeError                  anything the Kubernetes backend raises on purpose
    ├── TemporaryError         5xx, 429, timeouts, connection errors: retry with backoff
    │   └── ConflictError      409 on a write: someone else wrote first; re-read, re-apply
    └── PermanentError         any other 4xx, or a cluster that cannot carry the action: do not retry
        └── NotFoundError      404: the object (or its resource type) is not there

This is the Kubernetes branch of the project's one error tree (:mod:`controller.errors`): ``KubeError`` is a
``VigilError``, and ``TemporaryError`` and ``PermanentError`` here are also the project's
:class:`controller.errors.TemporaryError` and :class:`controller.errors.PermanentError`, so the one retry loop
(:mod:`controller.retry`) retries exactly the temporary ones, and code outside this package (the actuator, the
webhooks) catches the project's classes without importing this module.

:func:`translate` maps what the official client raises (``ApiException`` and urllib3's errors) onto this
tree; the rest of ``controller.actuators.kubernetes`` only ever catches these classes.
"""

from __future__ import annotations

import json

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from controller import errors
from controller.retry import retry_after

__all__ = ["ConflictError", "KubeError", "NotFoundError", "PermanentError", "TemporaryError", "translate"]


class KubeError(errors.VigilError):
    """A failed call to the API server (or an action the cluster cannot carry out)."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None,
                 retry_after: float | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        """HTTP status, when the server answered."""
        self.reason = reason
        """The ``reason`` of the server's ``Status`` body (``Conflict``, ``NotFound``...)."""
        self.retry_after = retry_after
        """Seconds the server asked us to wait (``Retry-After``), if it did."""
        self.attempts = attempts
        """Tries made before this error was raised (more than 1 once retries are exhausted)."""


class TemporaryError(KubeError, errors.TemporaryError):
    """The same call may well succeed later: retry it with backoff."""


class ConflictError(TemporaryError):
    """409: the object changed since it was read (stale ``resourceVersion``); re-read it and re-apply."""


class PermanentError(KubeError, errors.PermanentError):
    """Retrying the same call will fail the same way (forbidden, invalid, missing, misconfigured)."""


class NotFoundError(PermanentError):
    """404: the object, or its resource type, does not exist."""


def _status_body(exc: ApiException) -> tuple[str | None, str | None]:
    # The API server explains itself in a Status object; the exception's own reason is the HTTP phrase.
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    return body.get("reason"), body.get("message")


def _retry_after(exc: ApiException) -> float | None:
    return retry_after((exc.headers or {}).get("Retry-After"))


def translate(exc: BaseException) -> KubeError | None:
    """The :class:`KubeError` for what the official client raised; ``None`` for anything else (a bug:
    the caller re-raises it as it is rather than retrying it).

    >>> type(translate(ApiException(status=503))).__name__, type(translate(ApiException(status=403))).__name__
    ('TemporaryError', 'PermanentError')
    """
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiException):
        status = exc.status or 0
        reason, detail = _status_body(exc)
        text = f"{status} {reason or exc.reason or ''}: {detail or exc.reason or ''}".strip()
        code, why = status or None, reason or exc.reason
        if status == 409:
            return ConflictError(text, status=code, reason=why)
        if status == 404:
            return NotFoundError(text, status=code, reason=why)
        if status == 429 or status >= 500:
            return TemporaryError(text, status=code, reason=why, retry_after=_retry_after(exc))
        if 400 <= status < 500:
            return PermanentError(text, status=code, reason=why)
        # status 0: the client never got an HTTP answer (it says so for SSL and connection trouble)
        return TemporaryError(f"no answer from the API server: {exc.reason}", reason=exc.reason)
    if isinstance(exc, urllib3.exceptions.HTTPError | TimeoutError | ConnectionError):
        return TemporaryError(f"no answer from the API server: {type(exc).__name__}: {exc}")
    return None
