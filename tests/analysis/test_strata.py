"""Strata as coarse as validity allows (``spec.analysis.stratum``): a table pools a stretch of event time in
which the canary's share of traffic stays the same, cut early where the weight is set or the observed share
changes; exact under an incident that hits both versions, and more powerful than one table per second."""

from __future__ import annotations

import numpy as np
import pytest

from controller.analysis.strata import share_split
from controller.contracts.decisions import seconds
from controller.engine.core import Engine
from tests.support.traffic import T0, rollout, run, summaries, traffic


def fed_starts(engine: Engine) -> list[int]:
    a = engine.agents["bot"].analysis
    assert a is not None
    return [s - T0 for s, _ in a.window]


def test_a_stratum_spans_its_length_and_a_shorter_one_each_bucket() -> None:
    items = summaries(traffic(seed=31, seconds=59, escalation=(0.1, 0.1)))
    pooled, per_bucket = Engine([rollout(window=3600)]), Engine([rollout(window=3600, stratum=0)])
    run(pooled, items, flush=False)
    run(per_bucket, items, flush=False)
    closed = len(fed_starts(per_bucket))  # the buckets closed so far: each one a stratum
    assert closed > 30 and fed_starts(per_bucket) == list(range(closed))
    assert fed_starts(pooled) == [0]  # the second stratum, from 30 s, is still open
    a = pooled.agents["bot"].analysis
    assert a is not None and a.stratum.start == T0 + 30 and len(a.stratum.parts) == closed - 30


def test_a_change_of_the_canary_share_cuts_the_stratum_where_it_changed() -> None:
    # the canary's share goes from 10% to 40% at 150 s, back at 250 s (track mode: nothing announces it)
    engine = Engine([rollout(window=3600)])
    run(engine, summaries(traffic(seed=32, seconds=400, incident=(150, 250, 0.1, 0.4))))
    starts = fed_starts(engine)
    assert 150 in starts and any(248 <= s <= 251 for s in starts)


def test_share_split_finds_the_change_and_only_a_real_one() -> None:
    rng = np.random.default_rng(33)
    steady = [(int(c), 50) for c in rng.binomial(50, 0.1, 30)]
    assert share_split(steady) is None
    changed = steady[:12] + [(int(c), 50) for c in rng.binomial(50, 0.3, 18)]
    assert share_split(changed) == 12


def test_the_weight_a_step_sets_cuts_the_stratum() -> None:
    steps = [{"setWeight": 10}, {"pause": {"duration": "45s"}}, {"setWeight": 50}, {"pause": {"duration": "1h"}}]
    engine = Engine([rollout(steps=steps, window=3600, promotion={"evidence": False})])
    decisions = run(engine, summaries(traffic(seed=34, seconds=120, escalation=(0.1, 0.1))))
    second = next(d for d in decisions if d.action == "set_weight" and d.weights["v2"] == 50.0)
    at = int(seconds(second.time)) - T0  # the end of the bucket it was decided in
    assert at in fed_starts(engine)  # the next stratum starts there, not 30 s after the last one
    assert at % 30 != 0


def test_pooled_strata_catch_a_low_traffic_harm_sooner_than_one_table_per_second() -> None:
    delays = {}
    for stratum in (0, 30):
        found = []
        for seed in range(35, 41):
            stream = traffic(seed=seed, seconds=900, rate=4.0, escalation=(0.10, 0.20))
            d = [x for x in run(Engine([rollout(stratum=stratum)]), summaries(stream)) if x.action == "rollback"]
            found.append(seconds(d[0].time) - T0 if d else 900.0)
        delays[stratum] = float(np.median(found))
    assert delays[30] < delays[0]


@pytest.mark.slow
def test_pooled_strata_stay_within_alpha_under_incidents_that_move_the_canary_share() -> None:
    """Healthy canaries (track mode, 20 interactions/s), each with a short incident that sends escalations on
    both versions from 5% to 60% while the canary's share jumps from 10% to 50%: strata pooled across the jump
    roll most of them back (80% in a run with the cut at share changes turned off); cut where the share changed,
    at most alpha of them (+3 SE)."""
    alpha, streams, rolled = 0.1, 40, 0
    for seed in range(streams):
        rng = np.random.default_rng(seed)
        start = int(rng.integers(30, 200))
        stream = traffic(seed=1000 + seed, seconds=300, rate=20.0, escalation=(0.05, 0.05),
                         incident=(start, start + int(rng.integers(10, 40)), 0.6, 0.5))
        rolled += any(d.action == "rollback" for d in run(Engine([rollout(alpha=alpha)]), summaries(stream)))
    assert rolled / streams <= alpha + 3 * (alpha * (1 - alpha) / streams) ** 0.5
