"""Live-path throughput on the embedded broker: a backlog of simulated events, produced beforehand by
librdkafka (confluent-kafka), read by `vigil run`'s two stages; the clock runs from the worker's start
until every event is ingested and every summary is applied. A fresh broker per run (Tansu keeps
everything in memory). Prints one JSON line.

Run: `.venv/bin/python -m benchmarks.pipeline_throughput [N]` (N events, default 200,000).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from controller.actuators.memory import InMemoryCluster
from controller.runtime.kafka import ensure_topics
from controller.runtime.pipeline import PipelineSettings
from controller.tools.broker import EmbeddedBroker
from controller.tools.simulate import SimConfig, write_jsonl
from controller.worker import Worker


def _produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 1_000_000})
    for line in lines:
        p.produce(topic, line, key=b"support-bot")
        p.poll(0)
    assert p.flush(60) == 0


async def main(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        write_jsonl(SimConfig(rate=100.0, duration=n / 100.0, seed=2), path)
        lines = path.read_bytes().splitlines()
    with EmbeddedBroker() as broker:
        settings = PipelineSettings(bootstrap=broker.bootstrap, topic="bench", session_timeout_ms=4000)
        await ensure_topics(broker.bootstrap, {settings.topic: settings.partitions})
        t = time.perf_counter()
        await asyncio.to_thread(_produce, broker.bootstrap, settings.topic, lines)
        produce_s = time.perf_counter() - t
        worker = Worker(settings, [], InMemoryCluster(), http_port=None)
        t = time.perf_counter()
        run = asyncio.create_task(worker.run())
        while not worker.is_ready():
            await asyncio.sleep(0.01)
        joined = time.perf_counter()
        while worker.stats.events < len(lines) or worker.stats.summaries < worker.stats.summaries_sent:
            if run.done():
                run.result()
            await asyncio.sleep(0.01)
        done = time.perf_counter()
        worker.stop()
        await run
    return {"events": len(lines), "produce_s": round(produce_s, 2), "join_s": round(joined - t, 2),
            "process_s": round(done - joined, 2), "events_per_s": round(len(lines) / (done - joined)),
            "checkpoints": worker.stats.checkpoints}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000))))
