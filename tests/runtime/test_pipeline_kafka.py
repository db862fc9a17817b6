"""The live path on the real embedded broker: events in, decisions out, bad events to the DLQ,
a restarted worker resuming from its committed offsets and its checkpointed state, and ``vigil run``
deciding exactly as ``vigil replay`` on the same events, fed by an independent client (librdkafka)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.actuators.memory import InMemoryCluster
from controller.contracts.decisions import Decision, encode
from controller.replay import replay
from controller.runtime.pipeline import DLQ_REASON_HEADER, DLQ_SOURCE_HEADER
from controller.tools.broker import EmbeddedBroker, free_port
from controller.tools.simulate import Fault, SimConfig, write_jsonl
from controller.worker import Worker
from tests.support.kafka import consume, pipeline_settings, produce
from tests.support.polling import wait_for

START = 1_790_000_000.0


def _events(tmp_path: Path, name: str, fault: bool, duration: float = 300.0, seed: int = 1) -> list[bytes]:
    path = tmp_path / name
    faults = (Fault("escalation", onset=150.0, magnitude=3.0),) if fault else ()
    write_jsonl(SimConfig(rate=40, duration=duration, seed=seed, start=START, faults=faults), path)
    return path.read_bytes().splitlines()


def _key(line: bytes) -> bytes:
    return json.loads(line)["data"]["conversation_id"].encode()




def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback only
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


async def test_events_in_decision_out_and_bad_events_to_the_dlq(
        broker: EmbeddedBroker, unique: Callable[[str], str], tmp_path: Path) -> None:
    settings = pipeline_settings(broker, unique)
    lines = _events(tmp_path, "faulty.jsonl", fault=True)
    expected = [encode(d) for d in replay(tmp_path / "faulty.jsonl")]
    assert [json.loads(x)["action"] for x in expected] == ["rollback"]
    decided: list[Decision] = []
    cluster = InMemoryCluster()
    worker = Worker(settings, [], cluster, http_port=0, on_decision=decided.append)
    run = asyncio.create_task(worker.run())
    await wait_for(worker.is_ready)
    bad = [
        (b"k1", b"{not json", None),
        (b"k2", b'{"agent": "support-bot", "time": "2026-11-26T00:00:00Z"}', None),  # no version
        (b"k3", b'{"agent": "a", "version": "v"}', [("ce_specversion", b"1.0"), ("ce_time", b"yesterday")]),
        (None, None, None),  # neither key nor value
    ]
    # keyed by agent, as docs/events.md recommends: one partition holds an agent's events in order
    records = [(b"support-bot", x, None) for x in lines[:2000]] + bad + \
        [(b"support-bot", x, None) for x in lines[2000:]]
    # a foreign record on the internal summaries topic is skipped, not fatal
    await asyncio.to_thread(produce, broker.bootstrap, settings.summaries_topic, [(b"support-bot", b"junk", None)])
    await asyncio.to_thread(produce, broker.bootstrap, settings.topic, records)
    await wait_for(lambda: bool(decided) and worker.stats.events == len(lines), timeout=90, run=run)
    assert worker.stats.invalid["bad_summary"] == 1
    # the same decisions as replay, byte for byte, on the decisions topic too
    assert [encode(d) for d in decided] == expected
    on_topic = await asyncio.to_thread(consume, broker.bootstrap, settings.decisions_topic,
                                       lambda got: len(got) >= len(expected), 30)
    assert [m.value() for m in on_topic] == expected
    assert cluster.weights("support-bot") == {"v1": 100.0, "v2": 0.0}
    # every bad record is in the DLQ with its original bytes and a reason; none was lost or counted
    dlq = await asyncio.to_thread(consume, broker.bootstrap, settings.dlq_topic, lambda got: len(got) >= 4, 30,
                                  settings.partitions)
    by_key = {m.key(): m for m in dlq}
    assert by_key[None].value() in (b"", None)
    assert len(dlq) == 4 and worker.stats.events == len(lines)
    for key, value, _ in bad[:3]:
        msg = by_key[key]
        assert msg.value() == value
        headers = dict(msg.headers())
        assert headers[DLQ_REASON_HEADER] and headers[DLQ_SOURCE_HEADER].startswith(settings.topic.encode())
    assert b"malformed JSON" in dict(by_key[b"k1"].headers())[DLQ_REASON_HEADER]
    assert b"empty record" in dict(by_key[None].headers())[DLQ_REASON_HEADER]
    assert b"version" in dict(by_key[b"k2"].headers())[DLQ_REASON_HEADER]
    assert b"ce_time" in dict(by_key[b"k3"].headers())[DLQ_REASON_HEADER]
    # the HTTP endpoints report it
    assert worker.http is not None
    base = f"http://127.0.0.1:{worker.http.port}"
    status, body = await asyncio.to_thread(_get, base + "/metrics")
    assert status == 200
    assert b'vigil_events_invalid_total{reason="malformed_json"} 1.0' in body
    assert b'vigil_decisions_total{action="rollback"} 1.0' in body
    assert f"vigil_events_total {len(lines)}.0".encode() in body
    status, body = await asyncio.to_thread(_get, base + "/api/v1/decisions")
    assert status == 200 and json.loads(body)[0]["action"] == "rollback"
    assert (await asyncio.to_thread(_get, base + "/readyz"))[0] == 200
    assert (await asyncio.to_thread(_get, base + "/nope"))[0] == 404
    worker.stop()
    await run


async def test_restarted_worker_resumes_from_committed_offsets_with_its_state(
        broker: EmbeddedBroker, unique: Callable[[str], str], tmp_path: Path) -> None:
    settings = pipeline_settings(broker, unique)
    lines = _events(tmp_path, "faulty.jsonl", fault=True, seed=4)
    expected = [encode(d) for d in replay(tmp_path / "faulty.jsonl")]
    assert expected, "the fault must be detected in replay"
    cut = next(i for i, x in enumerate(lines) if json.loads(x)["time"] >= "2026-09-21T14:15:00")  # before onset
    decided: list[Decision] = []

    first = Worker(settings, [], InMemoryCluster(), http_port=None, on_decision=decided.append)
    run = asyncio.create_task(first.run())
    await wait_for(first.is_ready)
    await asyncio.to_thread(produce, broker.bootstrap, settings.topic, [(b"support-bot", x, None) for x in lines[:cut]])
    await wait_for(lambda: first.stats.events == cut)
    await wait_for(lambda: first.state is not None and first.stats.summaries == first.stats.summaries_sent
                 and not first.state.dirty)
    first.stop()
    await run  # stopping writes a last checkpoint and commits
    assert first.state is not None
    seen_before = first.state.engine.agents["support-bot"].analysis
    assert seen_before is not None and seen_before.buckets_seen > 0
    buckets_before = seen_before.buckets_seen
    assert decided == []

    second = Worker(settings, [], InMemoryCluster(), http_port=None, on_decision=decided.append)
    run = asyncio.create_task(second.run())
    try:
        await wait_for(second.is_ready)
        assert second.stats.restored_agents == 1
        assert second.state is not None
        restored = second.state.engine.agents["support-bot"].analysis
        # restored from the checkpoint, not rebuilt: the summaries the first worker's ingest flushed while it
        # stopped may already have closed more buckets (a loaded machine), never fewer
        assert restored is not None and restored.buckets_seen >= buckets_before
        await asyncio.to_thread(produce, broker.bootstrap, settings.topic,
                                [(b"support-bot", x, None) for x in lines[cut:]])
        await wait_for(lambda: bool(decided), timeout=90)
        await wait_for(lambda: second.stats.events == len(lines) - cut)
        # nothing re-read from before the restart, and the decision is the one an uninterrupted run makes
        assert second.stats.events == len(lines) - cut
        assert [encode(d) for d in decided] == expected
    finally:
        second.stop()
        await run


async def test_several_canaries_live_with_a_restart_decide_as_replay(
        broker: EmbeddedBroker, unique: Callable[[str], str], tmp_path: Path) -> None:
    """Track mode, v2 and v3 sharing the canary traffic, v3 harmful from 150 s: the worker is stopped at 100 s
    (both canaries judged, checkpointed to the changelog) and a second one resumes; the decisions are replay's."""
    settings = pipeline_settings(broker, unique)
    path = tmp_path / "canaries.jsonl"
    write_jsonl(SimConfig(rate=40, duration=300, seed=7, start=START, canary_weight=40, extra_canary_versions=("v3",),
                          faults=(Fault("escalation", onset=150.0, magnitude=3.0, version="v3"),)), path)
    lines = path.read_bytes().splitlines()
    expected = [encode(d) for d in replay(path)]
    assert [(json.loads(x)["action"], json.loads(x)["version"]) for x in expected] == [("rollback", "v3")]
    cut = next(i for i, x in enumerate(lines) if json.loads(x)["time"] >= "2026-09-21T14:15:00")  # 100 s in
    decided: list[Decision] = []
    first = Worker(settings, [], InMemoryCluster(), http_port=None, on_decision=decided.append)
    run = asyncio.create_task(first.run())
    await wait_for(first.is_ready)
    await asyncio.to_thread(produce, broker.bootstrap, settings.topic, [(b"support-bot", x, None) for x in lines[:cut]])
    await wait_for(lambda: first.state is not None and first.stats.events == cut
                   and first.stats.summaries == first.stats.summaries_sent and not first.state.dirty)
    first.stop()
    await run
    assert first.state is not None and sorted(first.state.engine.agents["support-bot"].runs) == ["v2", "v3"]
    cluster = InMemoryCluster()
    second = Worker(settings, [], cluster, http_port=None, on_decision=decided.append)
    run = asyncio.create_task(second.run())
    try:
        await wait_for(second.is_ready)
        assert second.state is not None and sorted(second.state.engine.agents["support-bot"].runs) == ["v2", "v3"]
        await asyncio.to_thread(produce, broker.bootstrap, settings.topic,
                                [(b"support-bot", x, None) for x in lines[cut:]])
        await wait_for(lambda: bool(decided) and second.stats.events == len(lines) - cut, timeout=90, run=run)
        assert [encode(d) for d in decided] == expected
        st = second.state.engine.agents["support-bot"]
        assert st.runs["v2"].policy.phase == "progressing" and st.runs["v3"].policy.phase == "rolled_back"
    finally:
        second.stop()
        await run


async def test_a_backlog_spread_over_partitions_is_read_without_late_events(
        broker: EmbeddedBroker, unique: Callable[[str], str], tmp_path: Path) -> None:
    """Events keyed by conversation, all waiting before the worker starts (a restart after downtime):
    partitions still holding a backlog hold the watermark back, so nothing is late and the decisions
    are those of replay."""
    settings = pipeline_settings(broker, unique)
    lines = _events(tmp_path, "faulty.jsonl", fault=True, seed=6)
    expected = [encode(d) for d in replay(tmp_path / "faulty.jsonl")]
    from controller.runtime.kafka import ensure_topics

    await ensure_topics(broker.bootstrap, {settings.topic: settings.partitions})
    await asyncio.to_thread(produce, broker.bootstrap, settings.topic, [(_key(x), x, None) for x in lines])
    decided: list[Decision] = []
    # small polls, so the partitions are read unevenly, as a large backlog is
    worker = Worker(dataclasses.replace(settings, max_batch=500), [], InMemoryCluster(), http_port=None,
                    on_decision=decided.append)
    run = asyncio.create_task(worker.run())
    await wait_for(lambda: worker.stats.events == len(lines) and bool(decided), timeout=90, run=run)
    assert worker.state is not None
    assert worker.state.engine.agents["support-bot"].window.late_events == 0
    assert [encode(d) for d in decided] == expected
    worker.stop()
    await run


def test_vigil_run_decides_like_vigil_replay(broker: EmbeddedBroker, unique: Callable[[str], str],
                                             tmp_path: Path) -> None:
    """The command line end to end: ``vigil run`` as its own process, events from confluent-kafka."""
    lines = _events(tmp_path, "faulty.jsonl", fault=True, seed=9)
    replayed = subprocess.run([sys.executable, "-m", "controller.cli", "replay", str(tmp_path / "faulty.jsonl")],
                              capture_output=True, check=True).stdout.splitlines()
    assert replayed
    topic, decisions, port = unique("events"), unique("decisions"), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", "--bootstrap", broker.bootstrap, "--topic", topic,
         "--decisions-topic", decisions, "--group", unique("g"), "--http-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        import time

        deadline = time.monotonic() + 60
        while _ready(port) != 200:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "vigil run never became ready"
            time.sleep(0.2)
        produce(broker.bootstrap, topic, [(b"support-bot", x, None) for x in lines])
        got = consume(broker.bootstrap, decisions, lambda m: len(m) >= len(replayed), 90)
        assert [m.value() for m in got] == replayed
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()[-2000:]


def _ready(port: int) -> int | None:
    try:
        return _get(f"http://127.0.0.1:{port}/readyz")[0]
    except OSError:
        return None


@pytest.mark.parametrize("n", [1])
@pytest.mark.kafka
def test_embedded_broker_starts_and_stops(n: int) -> None:
    with EmbeddedBroker() as b:
        assert b.process is not None and b.process.poll() is None
        port = b.port
    assert b.process is None
    with pytest.raises(OSError):
        import socket

        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
