"""Kafka helpers: an independent client (confluent-kafka) to write and read topics, and pipeline settings."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable

from controller.runtime.pipeline import PipelineSettings
from controller.tools.broker import EmbeddedBroker


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


def pipeline_settings(broker: EmbeddedBroker, unique: Callable[[str], str]) -> PipelineSettings:
    """Pipeline settings on the session's broker with topics and a group of the test's own."""
    return PipelineSettings(bootstrap=broker.bootstrap, topic=unique("events"), summaries_topic=unique("sum"),
                            changelog_topic=unique("state"), decisions_topic=unique("decisions"),
                            group=unique("g"), session_timeout_ms=4000, checkpoint_interval=0.2)
