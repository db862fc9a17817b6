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
