"""An engine fed traffic from the simulator (``controller.tools.simulate``), as the live path feeds it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgspec

from controller.config import parse_rollout
from controller.contracts.events import Event, decode_line
from controller.engine.core import Engine
from controller.ingest.aggregator import Aggregator
from controller.ingest.buckets import Summary
from controller.tools.simulate import SimConfig, generate


def rollout(agent: str, name: str, analysis: dict[str, Any] | None = None) -> Any:
    spec: dict[str, Any] = {"agent": agent, "stable": {"version": "v1"}, "canary": {"version": "v2"}}
    if analysis is not None:
        spec["analysis"] = analysis
    return parse_rollout({"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout", "metadata": {"name": name},
                          "spec": spec})


def track_rollout(agent: str, name: str, analysis: dict[str, Any] | None = None) -> Any:
    """An AgentRollout without ``spec.stable`` and ``spec.canary``: its versions come from the events' track."""
    return msgspec.structs.replace(rollout(agent, name, analysis), stable=None, canary=None)


def feed(engine: Engine, config: SimConfig) -> None:
    agg = Aggregator()
    for i, doc in enumerate(generate(config)):
        agg.add(decode_line(json.dumps(doc).encode()), "0", i)
    for p in agg.drain():
        engine.apply(p)
    engine.flush()


def sim_events(config: SimConfig) -> list[Event]:
    """The simulator's events, decoded as the ingest stage decodes them."""
    return [decode_line(json.dumps(doc).encode()) for doc in generate(config)]


def sim_summaries(events: Iterable[Event], every: float = 1.0) -> list[Summary]:
    """The summaries of ``events`` (in event-time order), one poll per ``every`` seconds of event time, as the
    ingest stage would send them."""
    agg = Aggregator()
    out: list[Summary] = []
    poll: float | None = None
    for i, e in enumerate(events):
        if poll is not None and e.time >= poll + every:
            out.extend(agg.drain())
        if poll is None or e.time >= poll + every:
            poll = e.time
        agg.add(e, "0", i)
    out.extend(agg.drain())
    return out


def simulated_summaries(config: SimConfig, every: float = 5.0) -> list[Any]:
    """The summaries of a simulated stream as the ingest stage would send them: one poll per ``every`` seconds of
    event time."""
    agg = Aggregator()
    out: list[Any] = []
    edge: float | None = None
    for i, doc in enumerate(generate(config)):
        event = decode_line(json.dumps(doc).encode())
        if edge is None:
            edge = event.time + every
        elif event.time >= edge:
            out.extend(agg.drain())
            edge = event.time + every
        agg.add(event, "0", i)
    out.extend(agg.drain())
    return out
