"""Decision quality (issue 9): vigil against Flagger-style and Kayenta-style rules on simulated rollouts.

Run: `.venv/bin/python -m benchmarks.decision_quality [--runs N] [--healthy H] [--seed S] [--quick] [--jobs J]
[--kinds K1,K2]`.
Prints a markdown table. Each rollout is a `vigil simulate` run (rate 10 events/s, canary weight 10%: about
one canary interaction per second, six channels), healthy (half of them with an ``incident`` on both
versions) or with one canary fault starting at the first step (onset 60 s) or mid-rollout (onset 1200 s).
On the same events:

* **vigil**: ``controller.replay.replay`` with a watch-only ``AgentRollout`` (stable v1, canary v2, default
  analysis). Delay: event time of the first ``rollback`` minus the onset; for a category fault
  (``intent_shift``, ``model_switch``), of the first ``rollback`` or alert of a category-share test, since the
  default ``spec.analysis.categorical.action`` is ``alert``. The healthy row also gives the share of healthy
  rollouts with a category alert.
* **flagger-style**: every minute, per metric, the canary's value over that minute against the stable's:
  a rate (error, escalation, abandonment, guardrail block, truncation, tool error, low CSAT) fails when
  canary > 1.5 x stable; p99 latency and mean output tokens fail when canary > 1.5 x stable; mean
  helpfulness fails when canary < stable - 0.05. A minute with any failing metric is a failed check;
  rollback at the fifth failed check (Flagger's ``threshold: 5``; failed checks are not reset by passing
  ones). Metrics without canary data in a minute are skipped.
* **kayenta-style**: every five minutes, per metric, the one-minute values of canary and stable since the
  start of the rollout (Spinnaker's real-time analysis without a lookback) compared by a one-sided
  Mann-Whitney U (``scipy.stats.mannwhitneyu``) in the harmful direction; a metric fails at p < 0.05;
  every metric is critical, so any failure rolls back. No correction for repeated looks or many metrics.

A rollback of a healthy rollout, or before the onset, is a false rollback; a fault with no rollback after
its onset is a miss (infinite delay in the medians).

**Information floor** of a fault: the time for the expected log-likelihood ratio of the canary's events,
at the true effect with the stable law known, to reach ``log(1/alpha)`` (alpha = 0.01):

* a rate p0 -> p1 observed ``r`` times per second (canary interactions, tool calls or feedback answers):
  ``floor = log(1/alpha) / (r * KL(Bern(p1) || Bern(p0)))``,
  ``KL = p1 log(p1/p0) + (1-p1) log((1-p1)/(1-p0))``; a category's share is such a rate (the
  ``tech_support`` intent of ``intent_shift``); a value the stable never shows (the other model of
  ``model_switch``, p0 = 0) is conclusive at its first canary observation: ``floor = 1 / (r * p1)``;
* a value metric whose log (latency, tokens; the simulator draws them lognormal) or raw value
  (evaluation scores, normal) shifts by ``d`` with standard deviation ``s``:
  ``KL = d**2 / (2 s**2)`` and the same ``floor`` formula.

p0, p1, d and s are measured on a large simulated sample of the fault (canary weight 50%, the fault from
time 0) for the fault's primary metric; ``r`` is the canary rate of that metric's observations in the
benchmark's rollouts.

**Floor at vigil's threshold**: the same information against the log-likelihood ratio vigil's own test of
the metric must reach (``CanaryAnalysis.alarm_threshold``: ``log(1/level)`` at the test's share of the
budget, ``log 2`` for its first start, the log of its mixture's grid size), ``floor * threshold /
log(1/alpha)``: what a test with vigil's budget split and mixture would need if it knew the effect and the
stable law. ``model_switch`` keeps its floor (a first observation is conclusive at any threshold).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from scipy.stats import mannwhitneyu

from controller.config import Rollout, parse_rollout
from controller.contracts.decisions import seconds
from controller.contracts.events import decode_line
from controller.engine.core import Engine
from controller.ingest.aggregator import Aggregator
from controller.replay import replay
from controller.tools.simulate import Fault, SimConfig, generate

ALPHA = 0.01
RATE, WEIGHT = 10.0, 10.0
FAULTS = ("escalation", "error", "guardrail", "latency", "output_tokens", "csat", "length", "tool_error",
          "abandonment", "evaluation", "intent_shift", "model_switch")
#: Faults in the category mix: the default analysis alerts on them (categorical action ``alert``).
CATEGORY_FAULTS = ("intent_shift", "model_switch")
RULES = ("vigil", "flagger", "kayenta")
# Metric: (harmful direction, kind) over per-event columns; see Frame.
RATE_METRICS = ("error", "escalation", "abandonment", "blocked", "length", "tool_error", "low_csat")
VALUE_METRICS = ("latency_p99", "output_tokens", "helpfulness")
PRIMARY = {"escalation": "escalation", "error": "error", "guardrail": "blocked", "latency": "latency",
           "output_tokens": "output_tokens", "csat": "low_csat", "length": "length", "tool_error": "tool_error",
           "abandonment": "abandonment", "evaluation": "helpfulness", "intent_shift": "tech_support",
           "model_switch": "switched_model"}
#: the names of vigil's tests of each fault's primary metric (value metrics have two exceedance tests)
TESTS = {"escalation": ("escalation_rate",), "error": ("error_rate",), "guardrail": ("guardrail_block_rate",),
         "latency": ("latency_ms>p50", "latency_ms>p90"), "output_tokens": ("output_tokens>p50", "output_tokens>p90"),
         "csat": ("low_csat_rate",), "length": ("truncation_rate",), "tool_error": ("tool_error_rate",),
         "abandonment": ("abandonment_rate",), "evaluation": ("eval:helpfulness<p50", "eval:helpfulness<p10"),
         "intent_shift": ("intent_share[tech_support]",), "model_switch": ("model_share[gpt-4.1-mini]",)}


def bench_rollout(analysis: str = "{}") -> Rollout:
    """The watch-only AgentRollout vigil runs with; ``analysis``: JSON of ``spec.analysis`` settings."""
    spec: dict[str, Any] = {"agent": "support-bot", "stable": {"version": "v1"}, "canary": {"version": "v2"}}
    if analysis != "{}":
        spec["analysis"] = json.loads(analysis)
    return parse_rollout({"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout", "metadata": {"name": "bench"},
                          "spec": spec})


class Frame:
    """Per-event columns of a run (canary flag, minute, the observations of each metric)."""

    def __init__(self, config: SimConfig, events: Iterable[dict[str, Any]]) -> None:
        rows = [e["data"] | {"_t": e["time"]} for e in events]
        stamps = np.array([r["_t"].removesuffix("Z") for r in rows], dtype="datetime64[ms]")
        self.rel = stamps.astype(np.int64) / 1000.0 - config.start
        self.canary = np.array([r["track"] == "canary" for r in rows])
        outcome = np.array([r["outcome"] for r in rows])
        nan = math.nan
        self.cols: dict[str, np.ndarray] = {
            "error": (outcome == "error").astype(float),
            "escalation": (outcome == "escalated").astype(float),
            "abandonment": (outcome == "abandoned").astype(float),
            "blocked": np.array([any(g["action"] == "block" for g in r["guardrails"]) for r in rows], float),
            "length": np.array(["length" in r["finish_reasons"] for r in rows], float),
            "low_csat": np.array([float(r["feedback"]["csat"] <= 2) if "feedback" in r else nan for r in rows]),
            "latency": np.array([r["latency_ms"] if r["outcome"] != "error" else nan for r in rows]),
            "output_tokens": np.array([r["output_tokens"] if r["outcome"] != "error" else nan for r in rows],
                                      float),
            "helpfulness": np.array([r["evaluations"][0]["score"] if r["evaluations"] else nan for r in rows]),
            "tech_support": np.array([r["intent"] == "tech_support" for r in rows], float),
            "switched_model": np.array([r["model"] != config.model for r in rows], float),
        }
        # Tool calls: one observation per call (errors, calls) summed per event.
        self.tool_calls = np.array([len(r["tool_calls"]) for r in rows], float)
        self.tool_errors = np.array([sum(c["error_type"] is not None for c in r["tool_calls"]) for r in rows],
                                    float)

    def minute_values(self, minutes: int) -> dict[str, np.ndarray]:
        """Per metric, an array (2, minutes) of per-minute values, stable then canary (NaN: no data)."""
        minute = np.minimum((self.rel // 60).astype(np.int64), minutes - 1)
        out: dict[str, np.ndarray] = {}
        for name in (*RATE_METRICS, *VALUE_METRICS):
            table = np.full((2, minutes), math.nan)
            for side, track in enumerate((~self.canary, self.canary)):
                for m in range(minutes):
                    sel = track & (minute == m)
                    if name == "tool_error":
                        calls = self.tool_calls[sel].sum()
                        table[side, m] = self.tool_errors[sel].sum() / calls if calls else math.nan
                        continue
                    x = self.cols["latency" if name == "latency_p99" else name][sel]
                    x = x[~np.isnan(x)]
                    if x.size:
                        table[side, m] = np.percentile(x, 99) if name == "latency_p99" else x.mean()
            out[name] = table
        return out


def _fails(name: str, stable: float, canary: float) -> bool:
    if name == "helpfulness":
        return canary < stable - 0.05
    return canary > 1.5 * stable


def flagger(values: dict[str, np.ndarray], threshold: int = 5) -> float | None:
    """Seconds from the start at which the Flagger-style rule rolls back (None: never)."""
    minutes = next(iter(values.values())).shape[1]
    failed = 0
    for m in range(minutes):
        if any(not np.isnan(v[1, m]) and not np.isnan(v[0, m]) and _fails(name, v[0, m], v[1, m])
               for name, v in values.items()):
            failed += 1
            if failed >= threshold:
                return 60.0 * (m + 1)
    return None


def mann_whitney_fails(stable: np.ndarray, canary: np.ndarray, decrease: bool = False, p: float = 0.05) -> bool:
    """Kayenta's metric judgment: one-sided Mann-Whitney U in the harmful direction at level ``p``."""
    stable, canary = stable[~np.isnan(stable)], canary[~np.isnan(canary)]
    if stable.size < 2 or canary.size < 2 or np.ptp(np.concatenate([stable, canary])) == 0:
        return False
    result = mannwhitneyu(canary, stable, alternative="less" if decrease else "greater")
    return bool(result.pvalue < p)


def kayenta(values: dict[str, np.ndarray], every: int = 5) -> float | None:
    """Seconds from the start at which the Kayenta-style rule rolls back (None: never)."""
    minutes = next(iter(values.values())).shape[1]
    for end in range(every, minutes + 1, every):
        if any(mann_whitney_fails(v[0, :end], v[1, :end], decrease=name == "helpfulness")
               for name, v in values.items()):
            return 60.0 * end
    return None


def vigil(buf: bytes, start: float, analysis: str = "{}") -> tuple[float | None, float | None]:
    """Seconds from the start of vigil's first rollback on the events, and of its first alert of a category-share
    test (None: none)."""
    rollback = category = None
    for decision in replay(io.BytesIO(buf), [bench_rollout(analysis)]):
        if decision.action == "rollback" and rollback is None:
            rollback = seconds(decision.time) - start
        elif decision.action == "alert" and category is None and "_share[" in decision.reason:
            category = seconds(decision.time) - start
    return rollback, category


# --- information floor ---------------------------------------------------------------------------------
def kl_bernoulli(p1: float, p0: float) -> float:
    return p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))


def bernoulli_floor(p0: float, p1: float, rate: float, alpha: float = ALPHA) -> float:
    """Seconds for ``rate`` observations/s of Bern(p1) to carry ``log(1/alpha)`` against Bern(p0)."""
    return math.log(1 / alpha) / (rate * kl_bernoulli(p1, p0))


def gaussian_floor(shift: float, sd: float, rate: float, alpha: float = ALPHA) -> float:
    """Seconds for ``rate`` observations/s of a normal shifted by ``shift`` (sd ``sd``) to reach the threshold."""
    return math.log(1 / alpha) / (rate * shift**2 / (2 * sd**2))


def floor(kind: str, seed: int = 99, alpha: float = ALPHA) -> float:
    """The information floor of a canary fault of ``kind`` at the benchmark's canary rate (seconds)."""
    config = SimConfig(rate=200.0, duration=300.0, canary_weight=50.0, seed=seed, faults=(Fault(kind),))
    f = Frame(config, generate(config))
    metric = PRIMARY[kind]
    canary_per_s = RATE * WEIGHT / 100.0
    if metric == "tool_error":
        s, c = ~f.canary, f.canary
        p0, p1 = f.tool_errors[s].sum() / f.tool_calls[s].sum(), f.tool_errors[c].sum() / f.tool_calls[c].sum()
        return bernoulli_floor(p0, p1, canary_per_s * f.tool_calls[s].mean(), alpha)
    x = f.cols[metric]
    if metric == "switched_model":  # the stable never reports it: its first canary observation is conclusive
        return 1.0 / (canary_per_s * float(x[f.canary].mean()))
    seen = ~np.isnan(x)
    share = seen[~f.canary].mean()  # observations per interaction (feedback, evaluations)
    stable, canary = x[seen & ~f.canary], x[seen & f.canary]
    if metric in ("latency", "output_tokens"):
        stable, canary = np.log(stable), np.log(canary)
    if metric in ("latency", "output_tokens", "helpfulness"):
        return gaussian_floor(float(canary.mean() - stable.mean()), float(stable.std()), canary_per_s * share,
                              alpha)
    return bernoulli_floor(float(stable.mean()), float(canary.mean()), canary_per_s * share, alpha)


def vigil_threshold(kind: str, analysis: str = "{}", seed: int = 98) -> float:
    """The smallest log-likelihood ratio one of vigil's tests of ``kind``'s primary metric needs before its alarm
    (:meth:`CanaryAnalysis.alarm_threshold`), in a benchmark rollout of the fault (five minutes, from 0 s)."""
    config = SimConfig(rate=RATE, duration=300.0, canary_weight=WEIGHT, seed=seed, faults=(Fault(kind),))
    engine = Engine([bench_rollout(analysis)])
    agg = Aggregator()
    for i, doc in enumerate(generate(config)):
        agg.add(decode_line(_encoder.encode(doc)), "0", i)
    for p in agg.drain():
        engine.apply(p)
    a = engine.agents["support-bot"].analysis
    assert a is not None
    return min(a.alarm_threshold(n) for n in TESTS[kind] if n in a.tests)


# --- the runs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    kind: str  # a fault kind, or "healthy" / "incident"
    onset: float | None
    seed: int
    duration: float
    analysis: str = "{}"  # JSON of vigil's spec.analysis settings


_encoder = msgspec.json.Encoder()


def run_one(run: Run) -> dict[str, float | None]:
    """Rollback time (seconds from the start) of each rule on one simulated rollout."""
    faults: tuple[Fault, ...] = ()
    if run.kind == "incident":
        faults = (Fault("incident", onset=run.duration / 3, duration=run.duration / 6),)
    elif run.kind != "healthy":
        assert run.onset is not None
        faults = (Fault(run.kind, onset=run.onset),)
    config = SimConfig(rate=RATE, duration=run.duration, canary_weight=WEIGHT, seed=run.seed, faults=faults)
    events = list(generate(config))
    buf = b"\n".join(_encoder.encode(e) for e in events) + b"\n"
    values = Frame(config, events).minute_values(int(run.duration // 60))
    rollback, category = vigil(buf, config.start, run.analysis)
    if run.kind in CATEGORY_FAULTS:
        found = [t for t in (rollback, category) if t is not None]
        detected = min(found) if found else None
    else:
        detected = rollback
    return {"vigil": detected, "flagger": flagger(values), "kayenta": kayenta(values), "vigil_category_alert": category}


def plan(runs: int, healthy: int, seed: int, duration: float, onsets: tuple[float, ...],
         kinds: tuple[str, ...] = FAULTS) -> list[Run]:
    out = [Run("incident" if i % 2 else "healthy", None, seed + i, duration) for i in range(healthy)]
    k = healthy
    for kind in kinds:
        for onset in onsets:
            for _ in range(runs):
                out.append(Run(kind, onset, seed + k, duration))
                k += 1
    return out


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.0f}"


def table(results: list[tuple[Run, dict[str, float | None]]], floors: dict[str, float],
          at_test: dict[str, float] | None = None) -> str:
    """The markdown table: per fault kind (both onsets) and overall; ``at_test``: the floors at vigil's own test
    thresholds, a column of their own."""
    at_test = at_test or {}
    lines = ["| fault | runs | floor (s) | floor at vigil's threshold (s) | "
             + " | ".join(f"{r}: caught, median delay (s), false rb" for r in RULES)
             + " |", "|---|---|---|---|" + "---|" * len(RULES)]
    healthy = [x for x in results if x[0].onset is None]
    cells = []
    for rule in RULES:
        fr = sum(x[1][rule] is not None for x in healthy)
        cell = f"{100 * fr / max(1, len(healthy)):.0f}% rolled back"
        if rule == "vigil":
            alerted = sum(x[1].get("vigil_category_alert") is not None for x in healthy)
            cell += f" ({100 * alerted / max(1, len(healthy)):.0f}% a category alert)"
        cells.append(cell)
    lines.append(f"| healthy (half with an incident) | {len(healthy)} | - | - | " + " | ".join(cells) + " |")
    faulty_all = [x for x in results if x[0].onset is not None]
    groups = [(kind, [x for x in faulty_all if x[0].kind == kind]) for kind in floors]
    onsets = sorted({x[0].onset for x in faulty_all if x[0].onset is not None})
    groups = [g for g in groups if g[1]] + [(f"all faults, onset {_fmt(o)} s", [x for x in faulty_all
                                                                                if x[0].onset == o])
                                            for o in onsets] * (len(onsets) > 1) + [("all faults", faulty_all)]
    for kind, group in groups:
        cells = []
        for rule in RULES:
            delays, false = [], 0
            for run, res in group:
                at = res[rule]
                assert run.onset is not None
                if at is not None and at < run.onset:
                    false += 1
                    at = None
                delays.append(math.inf if at is None else at - run.onset)
            caught = sum(math.isfinite(d) for d in delays)
            med = statistics.median(delays)  # a miss is infinite, so is a median over half misses
            cells.append(f"{100 * caught / len(group):.0f}%, {_fmt(med)}, {false}")
        fl = _fmt(floors[kind]) if kind in floors else "-"
        ft = _fmt(at_test[kind]) if kind in at_test else "-"
        lines.append(f"| {kind} | {len(group)} | {fl} | {ft} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rollouts per fault kind and onset (default 3)")
    parser.add_argument("--healthy", type=int, default=10, help="healthy rollouts (default 10)")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds per rollout (default 3600)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 kinds, 1 run, 10-minute rollouts")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--analysis", default="{}", help='JSON of spec.analysis for vigil, e.g. \'{"stratum": 0}\'')
    parser.add_argument("--kinds", default=",".join(FAULTS), help="fault kinds, comma-separated (default all)")
    args = parser.parse_args(argv)
    bench_rollout(args.analysis)  # refused here, with the field named, rather than in every run
    if args.quick:
        kinds: tuple[str, ...] = ("escalation", "latency")
        runs = plan(1, 1, args.seed, 600.0, (60.0,), kinds)
    else:
        kinds = tuple(k for k in args.kinds.split(",") if k)
        unknown = [k for k in kinds if k not in FAULTS]
        if unknown:
            parser.error(f"unknown fault kinds {', '.join(unknown)} (known: {', '.join(FAULTS)})")
        runs = plan(args.runs, args.healthy, args.seed, args.duration, (60.0, min(1200.0, args.duration / 3)),
                    kinds)
    runs = [dataclasses.replace(r, analysis=args.analysis) for r in runs]
    if args.jobs > 1:
        import multiprocessing

        with multiprocessing.Pool(args.jobs) as pool:
            outcomes = pool.map(run_one, runs)
    else:
        outcomes = [run_one(r) for r in runs]
    floors = {kind: floor(kind) for kind in kinds}
    # the same information against the threshold vigil's test must reach (a first observation of a value the
    # stable never shows is conclusive at any threshold: that floor stays as it is)
    at_test = {kind: fl if PRIMARY[kind] == "switched_model"
               else fl * vigil_threshold(kind, args.analysis) / math.log(1 / ALPHA) for kind, fl in floors.items()}
    text = table(list(zip(runs, outcomes, strict=True)), floors, at_test)
    print(text)
    return text


if __name__ == "__main__":
    main()
