"""Replay throughput: `vigil replay` on 100,000 simulated events (decode, aggregate, analyse, decide).

Run: `make bench` (or `.venv/bin/python -m benchmarks.replay_throughput [N]`). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from controller.contracts.events import decode_line
from controller.ingest.aggregator import Aggregator
from controller.replay import ReplayStats, replay
from controller.tools.simulate import Fault, SimConfig, write_jsonl


def main(n: int = 100_000) -> dict[str, float]:
    rate = 100.0
    with tempfile.TemporaryDirectory() as tmp:
        results: dict[str, float] = {"events": n}
        for label, faults in (("healthy", ()), ("faulty", (Fault("escalation", onset=n / rate / 2),))):
            path = Path(tmp) / f"{label}.jsonl"
            write_jsonl(SimConfig(rate=rate, duration=n / rate, seed=1, faults=faults), path)
            lines = path.read_bytes().splitlines()
            t = time.perf_counter()
            events = [decode_line(x) for x in lines]
            decode = time.perf_counter() - t
            agg = Aggregator()
            t = time.perf_counter()
            for i, e in enumerate(events):
                agg.add(e, "0", i)
            agg.drain()
            aggregate = time.perf_counter() - t
            best = float("inf")
            for _ in range(3):
                stats = ReplayStats()
                t = time.perf_counter()
                decisions = list(replay(path, stats=stats))
                best = min(best, time.perf_counter() - t)
            results.update({
                f"{label}_lines": len(lines), f"{label}_decisions": len(decisions),
                f"{label}_replay_s": round(best, 3), f"{label}_events_per_s": round(len(lines) / best),
                f"{label}_decode_events_per_s": round(len(lines) / decode),
                f"{label}_aggregate_events_per_s": round(len(lines) / aggregate),
            })
    return results


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)))
