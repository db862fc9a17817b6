"""An engine fed traffic from the simulator (``controller.tools.simulate``), as the live path feeds it."""

from __future__ import annotations

import json
from typing import Any

from controller.config import parse_rollout
from controller.contracts.events import decode_line
from controller.engine.core import Engine
from controller.ingest.aggregator import Aggregator
from controller.tools.simulate import SimConfig, generate


def rollout(agent: str, name: str) -> Any:
    return parse_rollout({"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout", "metadata": {"name": name},
                          "spec": {"agent": agent, "stable": {"version": "v1"}, "canary": {"version": "v2"}}})


def feed(engine: Engine, config: SimConfig) -> None:
    agg = Aggregator()
    for i, doc in enumerate(generate(config)):
        agg.add(decode_line(json.dumps(doc).encode()), "0", i)
    for p in agg.drain():
        engine.apply(p)
    engine.flush()


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
