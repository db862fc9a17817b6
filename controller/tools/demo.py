"""``vigil demo``: the whole path live on one machine, no cluster needed.

An embedded broker, the simulator sending traffic that follows the in-memory cluster's weights, the
worker deciding, and a terminal view of the weights, of what the detectors see, and of every decision
with its evidence. With a fault the canary is rolled back; with ``--no-fault`` it is promoted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TextIO

from controller.actuators.memory import InMemoryCluster
from controller.config import parse_rollout
from controller.contracts.decisions import Decision, seconds
from controller.runtime.pipeline import PipelineSettings
from controller.tools.broker import EmbeddedBroker
from controller.tools.simulate import Fault, SimConfig, produce
from controller.worker import Worker

__all__ = ["DEMO_ROLLOUT", "run_demo"]

AGENT, STABLE, CANARY = "support-bot", "v1", "v2"

DEMO_ROLLOUT = {
    "apiVersion": "vigil.dev/v1alpha1",
    "kind": "AgentRollout",
    "metadata": {"name": "support-bot"},
    "spec": {
        "agent": AGENT,
        "stable": {"version": STABLE},
        "canary": {"version": CANARY},
        "steps": [{"setWeight": 10}, {"pause": {"duration": "20s"}}, {"setWeight": 25},
                  {"pause": {"duration": "20s"}}, {"setWeight": 50}, {"pause": {"duration": "20s"}}],
        # promotion on evidence of a harm of odds ratio 3 (or +5 pp): what a couple of minutes of the 10% step's
        # traffic can catch (a doubling of a 0.5% error rate would take about ten minutes at this traffic)
        "analysis": {"alpha": 0.01, "minSamples": 50, "allowedLateness": "2s", "window": "30s",
                     "promotion": {"oddsRatio": 3, "increase": 0.05}},
    },
}


def _pct(k: int, n: int) -> str:
    return f"{100.0 * k / n:5.1f}% (n={n})" if n else "   -  (n=0)"


def _show_decision(d: Decision, out: TextIO, onset_wall: float | None, t0: float) -> None:
    print(f"\n>>> DECISION {d.action.upper()} {d.agent} {d.version} at {d.time}: {d.reason}", file=out)
    print(f"    weights now: {', '.join(f'{v} {w:g}%' for v, w in d.weights.items())}", file=out)
    for e in d.evidence:
        cv = f"{100 * e.canary_value:.1f}%" if e.canary_value is not None else "-"
        sv = f"{100 * e.stable_value:.1f}%" if e.stable_value is not None else "-"
        print(f"    evidence {e.metric:<24} canary {cv:>6} vs stable {sv:>6}  log-LR {e.statistic:6.2f} "
              f"/ {e.threshold:.2f}  anytime p={e.p_value:.2g}  n={e.n_canary}/{e.n_stable}", file=out)
    if d.examples:
        print(f"    example conversations: {', '.join(d.examples[:5])}", file=out)
    if d.action == "rollback" and onset_wall is not None:
        at = seconds(d.time)
        print(f"    rolled back {at - onset_wall:.1f} s after the fault's onset (event time), "
              f"{time.time() - t0:.0f} s into the demo", file=out)
    print(file=out, flush=True)


async def run_demo(fault: bool = True, rate: float = 80.0, seed: int = 7, timeout: float | None = None,
                   fault_spec: str = "escalation:onset=25,magnitude=3", out: TextIO | None = None) -> int:
    """Run the demo; 0 when it ends as it should (rolled back with a fault, not rolled back without).

    ``timeout`` (seconds of wall time) defaults to 110 with a fault and 240 without: a healthy canary is held at
    10% until each critical test has the data to catch a harm (about two minutes at the demo's traffic)."""
    import sys

    if timeout is None:
        timeout = 110.0 if fault else 240.0
    out = out or sys.stdout
    rollout = parse_rollout(DEMO_ROLLOUT)
    faults = (Fault.parse(fault_spec),) if fault else ()
    cluster = InMemoryCluster()
    await cluster.set_weights(AGENT, {STABLE: 100.0, CANARY: 0.0})
    decisions: list[Decision] = []
    final = asyncio.Event()
    t0 = time.time()
    onset_wall: float | None = None

    def on_decision(d: Decision) -> None:
        decisions.append(d)
        _show_decision(d, out, onset_wall, t0)
        if d.action in ("rollback", "promote"):
            final.set()

    with EmbeddedBroker() as broker:
        settings = PipelineSettings(bootstrap=broker.bootstrap, topic="agent.interactions", partitions=3,
                                    session_timeout_ms=4000)
        worker = Worker(settings, [rollout], cluster, http_port=0, on_decision=on_decision)
        print(f"vigil demo: embedded Kafka-compatible broker on {broker.bootstrap}; agent {AGENT}, stable {STABLE},"
              f" canary {CANARY}; steps 10% -> 25% -> 50% -> promote, 20 s apart", file=out)
        print("  fault: " + (faults[0].spec() + " (seconds after traffic starts)" if faults else
                             "none (--no-fault): the canary is healthy"), file=out, flush=True)
        run = asyncio.create_task(worker.run())
        while not worker.is_ready():
            if run.done():
                run.result()  # the worker failed to start: its exception surfaces here
                return 1
            await asyncio.sleep(0.1)
        if worker.http is not None:
            print(f"  metrics: http://127.0.0.1:{worker.http.port}/metrics   decisions: "
                  f"http://127.0.0.1:{worker.http.port}/api/v1/decisions", file=out, flush=True)
        stop_traffic = asyncio.Event()
        sim = SimConfig(agent=AGENT, stable_version=STABLE, canary_version=CANARY, rate=rate,
                        duration=timeout + 30, seed=seed, faults=faults)
        traffic_start = time.time()
        onset_wall = traffic_start + faults[0].onset if faults else None
        traffic = asyncio.create_task(produce(
            sim, broker.bootstrap, settings.topic, realtime=True, stop=stop_traffic,
            weight_fn=lambda: cluster.canary_weight(AGENT, CANARY)))
        deadline = time.monotonic() + timeout
        try:
            while not final.is_set() and time.monotonic() < deadline and not run.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(final.wait(), 3.0)
                if not final.is_set():
                    _status(worker, cluster, out, time.time() - traffic_start)
        finally:
            stop_traffic.set()
            await asyncio.gather(traffic, return_exceptions=True)
            worker.stop()
            await asyncio.gather(run, return_exceptions=True)
        if run.done() and not run.cancelled() and run.exception() is not None:
            raise run.exception()  # type: ignore[misc]
    rolled_back = any(d.action == "rollback" for d in decisions)
    promoted = any(d.action == "promote" for d in decisions)
    print(f"vigil demo: {'ROLLED BACK' if rolled_back else 'PROMOTED' if promoted else 'no rollback'}; "
          f"{worker.stats.events} events, {sum(worker.stats.decisions.values())} decisions, "
          f"{time.time() - t0:.0f} s", file=out, flush=True)
    return 0 if rolled_back == fault else 1


def _status(worker: Worker, cluster: InMemoryCluster, out: TextIO, elapsed: float) -> None:
    w = cluster.weights(AGENT)
    line = f"[{elapsed:5.0f}s] weights {STABLE} {w.get(STABLE, 0):g}% {CANARY} {w.get(CANARY, 0):g}% | " \
           f"events {worker.stats.events:6d}"
    st = worker.state.engine.agents.get(AGENT) if worker.state else None
    if st is not None and st.analysis is not None:
        view = st.analysis.window_view()
        nc, kc, ns, ks = view.get("escalation_rate", (0, 0, 0, 0))
        line += f" | last 30 s escalations: canary {_pct(kc, nc)} stable {_pct(ks, ns)}"
        tests = sorted(st.analysis.tests.items(), key=lambda kv: kv[1].statistic - kv[1].threshold,
                       reverse=True)[:2]
        line += " | closest tests: " + ", ".join(f"{n} {t.statistic:.1f}/{t.threshold:.1f}" for n, t in tests)
    print(line, file=out, flush=True)
