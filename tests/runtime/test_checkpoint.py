"""Checkpoints have a schema and a version: read as what they are (older ones migrated), or refused with a
clear message, never misread; on the real broker a newer checkpoint stops the worker and a record that is
not a checkpoint is skipped and counted."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from controller.actuators.memory import InMemoryCluster
from controller.contracts import checkpoint
from controller.contracts.checkpoint import Checkpoint, CheckpointError, NewerCheckpointError
from controller.engine.core import Engine
from controller.errors import VigilError
from controller.runtime.kafka import ensure_topics
from controller.runtime.pipeline import decode_state, encode_state
from controller.tools.broker import EmbeddedBroker
from controller.worker import Worker
from tests.support.kafka import pipeline_settings, produce
from tests.support.polling import wait_for
from tests.support.traffic import configured, run, summaries, traffic


def _raw(doc: object) -> bytes:
    return zlib.compress(msgspec.msgpack.encode(doc), 1)


@pytest.fixture(scope="module")
def stream() -> list[Any]:
    return summaries(traffic(seed=11, seconds=240, agent="bot-a", escalation=(0.10, 0.18)),
                     traffic(seed=12, seconds=240, agent="bot-b", escalation=(0.12, 0.12)), sources=2)


def test_a_checkpoint_carries_the_current_version_and_round_trips(stream: list[Any]) -> None:
    engine = configured()
    run(engine, stream[: len(stream) // 2], flush=False)
    state = engine.agent_state("bot-a")
    raw = encode_state(state)
    assert msgspec.msgpack.decode(zlib.decompress(raw))["version"] == checkpoint.VERSION == 3
    assert msgspec.json.encode(decode_state(raw)) == msgspec.json.encode(state)


def _flat_tests(analysis: dict[str, Any] | None) -> dict[str, Any] | None:
    """The analysis as versions 0 and 1 wrote it: each rate test a flat dict, before the detector contract."""
    if analysis is None:
        return None
    flat = {n: {k: v for k, v in {**t["params"], **t["vars"]}.items() if k not in ("change_every", "n")}
            for n, t in analysis["tests"].items()}
    return {**analysis, "tests": flat}


def before_fresh_starts() -> Engine:
    """:func:`configured`'s rollouts as versions 0 and 1 ran them: no fresh starts (``changeEvery: 0``)."""
    return Engine([msgspec.structs.replace(r, analysis=msgspec.structs.replace(r.analysis, change_every=0.0))
                   for r in configured().rollouts.values()])


def test_an_unversioned_checkpoint_is_migrated_and_decides_exactly_as_before(stream: list[Any]) -> None:
    expected = run(before_fresh_starts(), stream)
    at = int(len(stream) * 0.3)
    first = before_fresh_starts()
    before = run(first, stream[:at], flush=False)
    second = before_fresh_starts()
    for agent in first.agents:
        state = first.agent_state(agent)
        window = dict(state["window"])
        window["duplicate_partials"] = window.pop("duplicate_summaries") + 2  # the name version 0 used
        old = _raw({**state, "window": window, "analysis": _flat_tests(state["analysis"])})  # no version field
        migrated = decode_state(old)
        assert migrated["window"]["duplicate_summaries"] == state["window"]["duplicate_summaries"] + 2
        assert "duplicate_partials" not in migrated["window"]
        second.load_agent(migrated)
    assert second.agents["bot-a"].window.duplicate_summaries == first.agents["bot-a"].window.duplicate_summaries + 2
    assert before + run(second, stream[at:]) == expected


def test_a_version_1_checkpoint_is_migrated_and_decides_exactly_as_before(stream: list[Any]) -> None:
    expected = run(before_fresh_starts(), stream)
    at = int(len(stream) * 0.4)
    first = before_fresh_starts()
    before = run(first, stream[:at], flush=False)
    second = before_fresh_starts()
    migrated_tests = 0
    for agent in first.agents:
        state = first.agent_state(agent)
        migrated = decode_state(_raw({**state, "version": 1, "analysis": _flat_tests(state["analysis"])}))
        for t in (state["analysis"] or {}).get("tests", {}).values():
            assert t["params"]["change_every"] == 0
            t["vars"]["n"] = 0  # version 1 did not count tables: without fresh starts nothing reads the count
        assert msgspec.json.encode(migrated) == msgspec.json.encode(state)  # exactly what was saved
        migrated_tests += len((state["analysis"] or {}).get("tests", {}))
        second.load_agent(migrated)
    assert migrated_tests > 0, "the checkpoints must hold rate tests for the migration to be tested"
    assert before + run(second, stream[at:]) == expected


@pytest.mark.parametrize(("doc", "error", "says"), [
    ({"version": 4, "agent": "a"}, NewerCheckpointError, "checkpoint version 4 is newer than this vigil reads (3)"),
    ({"version": -1, "agent": "a"}, CheckpointError, "non-negative integer, got -1"),
    ({"version": "1", "agent": "a"}, CheckpointError, "non-negative integer, got '1'"),
    ({"version": 1, "agent": "a", "window": {}, "analysis": None, "policy": None, "extra": 1}, CheckpointError,
     "unknown field `extra`"),
    ({"version": 1, "agent": 7, "window": {}, "analysis": None, "policy": None}, CheckpointError, "`$.agent`"),
    ({"version": 1, "agent": "a", "analysis": None, "policy": None}, CheckpointError,
     "missing required field `window`"),
    ([1, 2], CheckpointError, "not a vigil checkpoint: a list"),
])
def test_what_is_not_a_readable_checkpoint_is_refused_with_why(doc: object, error: type[Exception], says: str) -> None:
    with pytest.raises(error) as info:
        checkpoint.decode(_raw(doc))
    assert says in str(info.value)
    assert isinstance(info.value, VigilError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("raw", [b"", b"not zlib", zlib.compress(b"\xc1")])
def test_bytes_that_are_no_checkpoint_are_refused(raw: bytes) -> None:
    with pytest.raises(CheckpointError, match="not a vigil checkpoint"):
        checkpoint.decode(raw)
    assert not isinstance(CheckpointError("x"), NewerCheckpointError)


def test_the_schema_is_what_the_engine_writes(stream: list[Any]) -> None:
    engine = configured()
    run(engine, stream, flush=False)
    for agent in engine.agents:
        state = engine.agent_state(agent)
        assert set(state) == set(Checkpoint.__struct_fields__) - {"version"}


async def test_on_restore_an_unreadable_record_is_skipped_and_counted(
        broker: EmbeddedBroker, unique: Callable[[str], str]) -> None:
    settings = pipeline_settings(broker, unique)
    await ensure_topics(broker.bootstrap, {settings.changelog_topic: settings.partitions})
    fresh = configured().state_for("bot-a")
    assert fresh is not None
    good = {"version": 1, "agent": "kept", "window": fresh.window.to_state(), "analysis": None, "policy": None}
    await asyncio.to_thread(produce, broker.bootstrap, settings.changelog_topic,
                            [(b"garbled", b"\x00not a checkpoint", None), (b"kept", _raw(good), None)])
    worker = Worker(settings, [], InMemoryCluster(), http_port=None)
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(worker.is_ready, run=task)
        assert worker.stats.checkpoints_unreadable == 1 and worker.stats.restored_agents == 1
        assert worker.state is not None and "garbled" not in worker.state.engine.agents
    finally:
        worker.stop()
        await task


async def test_on_restore_a_newer_checkpoint_stops_the_worker(
        broker: EmbeddedBroker, unique: Callable[[str], str]) -> None:
    settings = pipeline_settings(broker, unique)
    await ensure_topics(broker.bootstrap, {settings.changelog_topic: settings.partitions})
    await asyncio.to_thread(produce, broker.bootstrap, settings.changelog_topic,
                            [(b"bot", _raw({"version": 9, "agent": "bot"}), None)])
    worker = Worker(settings, [], InMemoryCluster(), http_port=None)
    with pytest.raises(NewerCheckpointError, match="version 9 is newer"):
        await asyncio.wait_for(worker.run(), timeout=60)
