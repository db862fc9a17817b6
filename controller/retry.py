"""One retry policy, one retry loop: the Kubernetes calls, the actuator and the webhooks all retry through
:func:`with_retries`, each with its :class:`RetryPolicy`.

What is retried is said by the exception's type (:mod:`controller.errors`): a :class:`TemporaryError` is
retried, anything else (a :class:`~controller.errors.PermanentError`, a bug) goes straight up. Wait number
``n`` (before try ``n + 1``) is ``base_delay * 2 ** (n - 1)``, raised to the other side's ``Retry-After`` when it
sent one, never above ``max_delay``, and shortened by up to ``jitter`` of itself at random. Once ``attempts``
tries have failed the last error goes up as the same class, its message prefixed ``gave up after N attempts``.

The policies in use::

    where                      attempts        waits                     jitter  on giving up
    Kubernetes calls  KUBE     5               0.1 s doubling to 5 s     20 %    the caller tries later
    actuator          DECISION until it lands  1 s doubling to 30 s      none    (never; leadership may end)
    webhooks          WEBHOOK  3               1 s, 2 s (at most 5 s)    none    counted failed

A Kubernetes call re-reads the object on every try, so a retry after a 409 conflict applies the change to the
fresh version instead of replaying a stale write. The actuator retries a whole decision (whose calls retry
themselves) until it lands, fails for good, or this replica stops leading.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from controller.errors import TemporaryError

__all__ = ["DECISION", "KUBE", "WEBHOOK", "Retrier", "RetryPolicy", "Sleep", "retry_after", "with_retries"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[object]]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int | None = 5
    """Tries in all (the first one included) before giving up with the last TemporaryError; None: no limit."""
    base_delay: float = 0.1
    """Seconds before the second try; each later wait doubles it."""
    max_delay: float = 5.0
    """Upper bound of any single wait, a server's ``Retry-After`` included."""
    jitter: float = 0.2
    """Fraction of each wait drawn at random (0: none; 0.2: the wait is 80-100 % of the nominal one)."""

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1 (or None: no limit), got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def delay(self, retry: int, retry_after: float | None = None, rand: float = 0.0) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the second try), given a uniform draw ``rand``.

        >>> p = RetryPolicy(base_delay=0.1, max_delay=1.0, jitter=0.0)
        >>> [p.delay(n) for n in (1, 2, 3, 4, 5)]
        [0.1, 0.2, 0.4, 0.8, 1.0]
        """
        # min() first: 2 ** retry overflows a float long before an unbounded policy runs out of retries
        nominal = min(self.max_delay, self.base_delay * 2.0 ** min(retry - 1, 64))
        if retry_after is not None:
            # the server knows its own load better than our schedule does, but the bound still holds
            nominal = min(self.max_delay, max(nominal, retry_after))
        # jitter only shortens the wait, so that max_delay stays a true bound while retries still spread out
        return nominal * (1.0 - self.jitter * rand)


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds; None for none, or for an HTTP date (the backoff covers it).

    >>> retry_after("2.5"), retry_after("-1"), retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), retry_after(None)
    (2.5, 0.0, None, None)
    """
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


KUBE = RetryPolicy()
"""Each call to the API server (a read, a guarded write)."""
DECISION = RetryPolicy(attempts=None, base_delay=1.0, max_delay=30.0, jitter=0.0)
"""A decision the leader carries out: retried until it lands (a rollback must not be lost)."""
WEBHOOK = RetryPolicy(attempts=3, base_delay=1.0, max_delay=5.0, jitter=0.0)
"""One notification to one webhook."""


async def with_retries(op: Callable[[], Awaitable[T]], policy: RetryPolicy, sleep: Sleep = asyncio.sleep, *,
                       rand: Callable[[], float] = random.random,
                       on_retry: Callable[[int, TemporaryError, float], object] | None = None) -> T:
    """Run ``op`` until it succeeds, retrying temporary errors up to ``policy.attempts`` tries in all.

    Raises anything but a :class:`TemporaryError` at once, and the last temporary error, as
    :meth:`TemporaryError.gave_up` words it (with the number of attempts), once the tries are used up.
    ``on_retry(retry, error, delay)`` is called before each wait, to log it in the caller's words (without it
    the wait is logged here, at INFO).
    """
    for attempt in itertools.count(1):
        try:
            return await op()
        except TemporaryError as exc:
            if policy.attempts is not None and attempt >= policy.attempts:
                raise exc.gave_up(attempt) from exc
            delay = policy.delay(attempt, exc.retry_after, rand())
            if on_retry is None:
                log.info("attempt %d failed (%s); retrying in %.3fs", attempt, exc.message, delay)
            else:
                on_retry(attempt, exc, delay)
            await sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


@dataclass(frozen=True)
class Retrier:
    """:func:`with_retries` with its policy and clock bound, handed to whatever calls out."""

    policy: RetryPolicy = KUBE
    """Tries and backoff."""
    sleep: Sleep = asyncio.sleep
    """How to wait (a fake clock in tests)."""

    async def __call__(self, op: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(op, self.policy, self.sleep)
