"""Every error vigil raises on purpose, in one tree, sorted by what the caller should do about it.

::

    VigilError                          anything vigil raises on purpose (``message``: what went wrong)
    ├── TemporaryError                  may succeed later: retried by controller.retry.with_retries
    │   │                               (``retry_after``, ``attempts``)
    │   ├── kubernetes.TemporaryError   5xx, 429, timeouts, connection errors from the API server  (KubeError)
    │   │   └── ConflictError           409 on a write: re-read, re-apply                          (KubeError)
    │   └── WebhookTemporaryError       a webhook's 5xx or 429, a timeout, a connection error, a Secret
    │                                   that cannot be read for now                               (WebhookError)
    ├── PermanentError                  retrying fails the same way: never retried
    │   ├── kubernetes.PermanentError   another 4xx, or a cluster that cannot carry the action      (KubeError)
    │   │   └── NotFoundError           404: the object (or its resource type) is not there         (KubeError)
    │   └── WebhookPermanentError       a webhook's 4xx or redirect (never followed), no usable token (WebhookError)
    ├── KubeError                       a failed call to the API server (``status``, ``reason``);
    │                                   controller/actuators/kubernetes/errors.py maps the client's errors onto it
    ├── WebhookError                    a notification not delivered (controller/notify/webhooks.py)
    ├── ConfigError      (ValueError)   an invalid AgentRollout or setting; ``path`` names the field (config.py)
    ├── InvalidEvent     (ValueError)   an event that breaks the contract; ``reason`` (contracts/events.py)
    ├── CheckpointError  (ValueError)   a changelog record that is not a readable checkpoint (contracts/checkpoint.py)
    │   └── NewerCheckpointError        written by a later vigil: the worker stops rather than misread it
    ├── DetectError      (ValueError)   bad input to ``vigil detect`` (tools/detect.py)
    └── BrokerError    (RuntimeError)   the embedded broker did not start (tools/broker.py)
        └── BrokerNotInstalled          its optional extra, vigil[broker], is not installed

A class named in parentheses is a second base: ``kubernetes.TemporaryError`` is both a :class:`TemporaryError`
and a ``KubeError``, so a caller catches either what to do (temporary or permanent) or where it came from. The
errors of a file's own input (``ConfigError``...) stay ``ValueError``\\ s as well, so nothing that caught them
before misses them now.

Only :class:`TemporaryError` is ever retried, by the one retry loop (:func:`controller.retry.with_retries`,
with the policy of the caller); anything else, a bug included, goes straight up. This module imports nothing
of vigil and nothing outside the standard library: every layer may import it.
"""

from __future__ import annotations

import copy
from typing import Self

__all__ = ["PermanentError", "TemporaryError", "VigilError"]


class VigilError(Exception):
    """An error vigil raises on purpose; ``message`` says what went wrong."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class TemporaryError(VigilError):
    """The same call may well succeed later: retry it with backoff."""

    def __init__(self, message: str = "", *, retry_after: float | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds the other side asked us to wait (``Retry-After``), if it did."""
        self.attempts = attempts
        """Tries made before this error was raised (more than 1 once retries are exhausted)."""

    def gave_up(self, attempts: int) -> Self:
        """A copy of this error (same class and fields) saying the retries ran out after ``attempts`` tries.

        >>> e = TemporaryError("HTTP 503").gave_up(3)
        >>> e.message, e.attempts
        ('gave up after 3 attempts: HTTP 503', 3)
        """
        out = copy.copy(self)  # a subclass whose constructor takes more than the message overrides this
        out.message = f"gave up after {attempts} attempts: {self.message}"
        out.args = (out.message,)
        out.attempts = attempts
        return out


class PermanentError(VigilError):
    """Retrying the same call will fail the same way (refused, invalid, missing, misconfigured)."""
