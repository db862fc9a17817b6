"""Waiting for a condition on the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any


async def wait_until(cond: Callable[[], Any], timeout: float, runs: Sequence[asyncio.Task[Any]] = (),
                     threaded: bool = False, every: float = 0.1) -> Any:
    """Poll ``cond`` (in a thread when it blocks) until it is truthy, and return it; fail with the last value
    after ``timeout`` seconds, or as soon as one of ``runs`` (workers) has stopped, with its error."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await asyncio.to_thread(cond) if threaded else cond()
        if got:
            return got
        for r in runs:
            if r.done():
                r.result()
                raise AssertionError("a worker stopped")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in time; last: {got!r}")
        await asyncio.sleep(every)


async def wait_for(cond: Callable[[], bool], timeout: float = 60.0, run: asyncio.Task | None = None) -> None:
    """Poll ``cond`` every 0.1 s until it holds; fail after ``timeout`` seconds, or as soon as ``run`` (a worker)
    has stopped, with its error."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if run is not None and run.done():
            run.result()  # the worker died: show why
            raise AssertionError("the worker stopped")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)
