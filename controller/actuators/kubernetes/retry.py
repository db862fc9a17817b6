"""Bounded retries with exponential backoff for calls to the API server.

Only :class:`~controller.actuators.kubernetes.errors.TemporaryError` (which includes a 409 conflict) is retried; a
:class:`~controller.actuators.kubernetes.errors.PermanentError` goes straight up. The operation re-reads the object on
every attempt, so a retry after a conflict applies the change to the fresh version instead of replaying a
stale write.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from controller.actuators.kubernetes.errors import TemporaryError

__all__ = ["Retrier", "RetryPolicy", "Sleep", "with_retries"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[object]]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    """Tries in all (the first one included) before giving up with a TemporaryError."""
    base_delay: float = 0.1
    """Seconds before the second try; each later wait doubles it."""
    max_delay: float = 5.0
    """Upper bound of any single wait, a server's ``Retry-After`` included."""
    jitter: float = 0.2
    """Fraction of each wait drawn at random (0: none; 0.2: the wait is 80-100 % of the nominal one)."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
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
        nominal = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        if retry_after is not None:
            # the server knows its own load better than our schedule does, but the bound still holds
            nominal = min(self.max_delay, max(nominal, retry_after))
        # jitter only shortens the wait, so that max_delay stays a true bound while retries still spread out
        return nominal * (1.0 - self.jitter * rand)


async def with_retries(op: Callable[[], Awaitable[T]], policy: RetryPolicy, sleep: Sleep = asyncio.sleep, *,
                       rand: Callable[[], float] = random.random,
                       on_retry: Callable[[int, TemporaryError, float], object] | None = None) -> T:
    """Run ``op`` until it succeeds, retrying temporary errors up to ``policy.attempts`` tries in all.

    Raises the permanent error at once, or a :class:`TemporaryError` carrying the number of attempts and the
    last error once the tries are used up (the caller then retries later, e.g. on the next decision).
    ``on_retry(retry, error, delay)`` is called before each wait.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return await op()
        except TemporaryError as exc:
            if attempt == policy.attempts:
                raise TemporaryError(f"gave up after {attempt} attempts: {exc.message}", status=exc.status,
                                     reason=exc.reason, attempts=attempt) from exc
            delay = policy.delay(attempt, exc.retry_after, rand())
            log.info("attempt %d failed (%s); retrying in %.3fs", attempt, exc.message, delay)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


@dataclass(frozen=True)
class Retrier:
    """:func:`with_retries` with its policy and clock bound, handed to whatever writes to the cluster."""

    policy: RetryPolicy = RetryPolicy()
    """Tries and backoff."""
    sleep: Sleep = asyncio.sleep
    """How to wait (a fake clock in tests)."""

    async def __call__(self, op: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(op, self.policy, self.sleep)
