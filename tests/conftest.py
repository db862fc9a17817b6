"""Shared fixtures: one real embedded broker (Tansu) per test session, on a free loopback port."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from controller.tools.broker import EmbeddedBroker

_counter = itertools.count()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    """The emulated Kubernetes API (tests/kube_emulator.py), one per test module."""
    from tests.kube_emulator import EmulatorThread

    e = EmulatorThread().start()
    yield e
    e.stop()


@pytest.fixture
def client(emu: Any) -> Iterator[Any]:
    """An official-client ``ApiClient`` on the emulated API."""
    c = emu.api_client()
    yield c
    c.close()


async def until(cond: Callable[[], Any], timeout: float, runs: Sequence[asyncio.Task[Any]] = (),
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


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names that no other test uses (topics, groups), so tests share the broker safely."""
    run = uuid.uuid4().hex[:6]
    return lambda prefix: f"{prefix}-{run}-{next(_counter)}"


def first_alarm_times(make: Callable[[], object], streams: list, block: int = 1000) -> np.ndarray:
    """Run length to the first alarm of a fresh change detector on each stream (its length + 1 without one),
    fed in blocks so that a stream stops at its first alarm."""
    out = []
    for xs in streams:
        det = make()
        for start in range(0, len(xs), block):
            alarms = det.update_many(xs[start:start + block])  # type: ignore[attr-defined]
            if len(alarms):
                out.append(start + int(alarms[0]) + 1)
                break
        else:
            out.append(len(xs) + 1)
    return np.asarray(out)


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None, list | None]]) -> int:
    """Send records with confluent-kafka (librdkafka): an independent client, not vigil's own."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": False})
    n = 0
    errors: list[str] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for key, value, headers in records:
        p.produce(topic, value=value, key=key, headers=headers or None, on_delivery=report)
        p.poll(0)
        n += 1
    assert p.flush(30) == 0, "records still queued after 30 s"
    assert not errors, errors
    return n


def consume(bootstrap: str, topic: str, until: Callable[[list], bool], timeout: float = 60.0,
            partitions: int = 1) -> list:
    """Read a topic from the beginning with confluent-kafka until ``until(messages)`` holds or time runs out."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(out):
            msg = c.poll(0.2)
            if msg is None or msg.error():
                continue
            out.append(msg)
    finally:
        c.close()
    return out
