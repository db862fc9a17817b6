"""The rollout's false-alarm budget across pooled and segment tests (``spec.analysis.segments``).

Rollouts are synthetic and fed straight to :meth:`CanaryAnalysis.observe` as closed buckets, one list of
:class:`Bucket` per step, one bucket per version, channel and tenant: every catalog metric (9 rate metrics,
7 value metrics, drawn as 8-bin histograms) and one evaluation (``eval:helpfulness``, a test discovered
mid-rollout), 3 channels, 6 tenants. Rates and value laws differ by channel and tenant, and the canary's
share of traffic differs by channel and grows over the rollout, as with ``setWeight`` steps: so only tests
that compare the versions within a channel stay calibrated, and a segment test that pooled channels would
be biased. In a null rollout the canary is drawn from the same law as the stable version in every stratum.

The null check is a union bound check: the fraction of rollouts with any test in alarm must not exceed
``alpha`` by more than three binomial standard errors. Ville's inequality and Bonferroni are both
conservative, so the measured fraction sits well below ``alpha`` (see benchmarks/calibration_family_wise.py);
how far below depends on the horizon and the dependence between the tests, so no lower bound is asserted.
"""

from __future__ import annotations

import json
import math

import msgspec
import numpy as np
import pytest

from controller.analysis import categorical
from controller.analysis.canary import SEGMENT_SHARE, CanaryAnalysis
from controller.config import Analysis, MetricOverride
from tests.support.family_wise import (
    CHANNELS,
    POOLED_TESTS,
    POWER_SEEDS,
    RATE_METRICS,
    SEGMENTED,
    TENANTS,
    first_rollback,
    healthy_law,
    null_rollouts,
    rollout,
    run,
    three_se,
)


# --- the union bound ------------------------------------------------------------------------------------
def test_every_test_that_can_ever_exist_fits_in_alpha() -> None:
    """Levels of the tests created, plus every slot still free, plus the pooled reserve: at most alpha."""
    law = healthy_law(len(TENANTS))
    a = run(SEGMENTED, rollout(np.random.default_rng(1), law, law, 12, 90))
    seg = a.segment_budget
    # the categorical tests (none here: the buckets carry no categories) hold their share of alpha apart
    rest = 0.2 * (1 - categorical.SHARE)
    assert a.categorical is not None and a.categorical.budget.alpha == pytest.approx(0.2 * categorical.SHARE)
    assert seg is not None and seg.alpha == pytest.approx(rest * SEGMENT_SHARE)
    assert a.budget.alpha == pytest.approx(rest * (1 - SEGMENT_SHARE))
    created = math.fsum(t.alpha for t in a.tests.values())
    assert created <= rest
    # fill every slot of every family of the catalog's tests, and of the evaluation tests discovered
    bases = sorted({a.base_of(n) for n in a.tests})
    assert len(bases) == POOLED_TESTS
    for base in bases:
        for dim, slots in seg.slots.items():
            added = 0
            with pytest.raises(ValueError, match="pool the rest"):
                while added <= slots:
                    seg.level(base, dim, f"value-{added}")
                    added += 1
            assert added < slots  # some slots were taken by the values seen
    pooled = math.fsum(a.budget.level(b) for b in bases)
    # what discovery can still take: the rest of both reserves, each a halving series that never ends
    assert pooled + seg.spent <= rest * (1 + 1e-12)
    assert seg.spent <= rest * SEGMENT_SHARE * (1 + 1e-12)


def test_segment_tests_are_made_per_value_with_other_pooling_the_rest() -> None:
    law = healthy_law(len(TENANTS))
    a = run(SEGMENTED, rollout(np.random.default_rng(2), law, law, 10, 90))
    assert sorted(a.segment_values["channel"]) == sorted(CHANNELS)
    assert len(a.segment_values["tenant"]) == 4 and set(a.segment_values["tenant"]) < set(TENANTS)
    per_base = 1 + len(CHANNELS) + 4 + 1  # pooled, 3 channels, 4 tenants, other
    assert len(a.tests) == POOLED_TESTS * per_base
    assert "escalation_rate[tenant=other]" in a.tests and "escalation_rate[channel=voice]" in a.tests
    assert "eval:helpfulness<p10[tenant=other]" in a.tests
    assert a.metric_of["latency_ms>p90[tenant=other]"] == "latency_ms"
    assert a.base_of("latency_ms>p90[tenant=other]") == "latency_ms>p90"
    # a channel's segment test sees exactly that channel's tables of the pooled test; a tenant's, its share of
    # them (less its strata where one version had no traffic)
    pooled = a.tests["escalation_rate"].counts
    channels = [a.tests[f"escalation_rate[channel={c}]"].counts for c in CHANNELS]
    assert [sum(c[j] for c in channels) for j in range(4)] == list(pooled)
    tenants = [a.tests[f"escalation_rate[tenant={v}]"].counts for v in [*a.segment_values["tenant"], "other"]]
    assert all(0 < c[0] < pooled[0] for c in tenants)
    assert 0.6 * pooled[0] < sum(c[0] for c in tenants) <= pooled[0]


def test_without_segments_nothing_changes() -> None:
    law = healthy_law(len(TENANTS))
    plain = run(Analysis(alpha=0.2, stratum=0), rollout(np.random.default_rng(3), law, law, 10, 90))
    assert plain.segment_budget is None and len(plain.tests) == POOLED_TESTS
    assert "segments" not in plain.to_state()
    segmented = run(SEGMENTED, rollout(np.random.default_rng(3), law, law, 10, 90))
    for name, t in plain.tests.items():
        # the same tables, at half the level
        assert segmented.tests[name].counts == t.counts
        assert segmented.tests[name].statistic == t.statistic
        assert segmented.tests[name].alpha == pytest.approx(t.alpha * (1 - SEGMENT_SHARE))


@pytest.mark.parametrize("stratum", [0, 5])
def test_analysis_state_round_trips_mid_rollout(stratum: int) -> None:
    """Also in the middle of a stratum (checkpointed at bucket 12 of strata of 5): its buckets come back."""
    law = healthy_law(len(TENANTS))
    steps = list(rollout(np.random.default_rng(4), law, law.with_rate("escalation_rate", 0, 0.5), 30, 90))
    settings = msgspec.structs.replace(SEGMENTED, stratum=stratum)
    whole = CanaryAnalysis("v1", "v2", settings)
    first = CanaryAnalysis("v1", "v2", settings)
    expected, got = [], []
    for i, (start, buckets) in enumerate(steps):
        expected.append(whole.observe(start, buckets))
        if i == 12:
            state = json.loads(json.dumps(first.to_state()))
            assert bool(state["stratum"]["parts"]) == bool(stratum)
            first = CanaryAnalysis("v1", "v2", settings)
            first.load_state(state)
        got.append(first.observe(start, buckets))
    assert got == expected and any(expected)
    assert first.to_state() == json.loads(json.dumps(whole.to_state()))
    assert first.evidence() == whole.evidence()


def test_segment_tests_keep_their_metric_s_critical_and_min_samples() -> None:
    settings = Analysis(alpha=0.05, segments=("tenant",), metrics=(
        MetricOverride("escalation_rate", critical=False), MetricOverride("error_rate", min_samples=10 ** 6)))
    law = healthy_law(len(TENANTS), escalation=0.05)
    harm = law.with_rate("escalation_rate", 0, 0.6).with_rate("error_rate", 0, 0.9)
    a = CanaryAnalysis("v1", "v2", settings)
    alarms = []
    for start, buckets in rollout(np.random.default_rng(5), law, harm, 40, 90):
        alarms = a.observe(start, buckets)
    by_name = {r.name: r for r in alarms}
    esc, err = by_name["escalation_rate[tenant=acme]"], by_name["error_rate[tenant=acme]"]
    assert (esc.metric, esc.critical, esc.enough_samples) == ("escalation_rate", False, True)
    assert (err.metric, err.critical, err.enough_samples) == ("error_rate", True, False)
    assert not any("tenant=globex" in n for n in by_name)
    (ev,) = a.evidence(["escalation_rate[tenant=acme]"])
    assert ev.metric == "escalation_rate[tenant=acme]"
    assert ev.canary_value is not None and ev.stable_value is not None and ev.canary_value > 3 * ev.stable_value


def test_a_rate_decrease_segment_test_shows_the_rate_itself() -> None:
    settings = Analysis(alpha=0.05, segments=("tenant",), metrics=(MetricOverride("resolution_rate"),))
    law = healthy_law(len(TENANTS))
    a = run(settings, rollout(np.random.default_rng(6), law, law.with_rate("resolution_rate", 1, 0.3), 40, 90))
    assert a.tests["resolution_rate[tenant=globex]"].alarm
    (ev,) = a.evidence(["resolution_rate[tenant=globex]"])
    assert ev.canary_value is not None and ev.stable_value is not None
    assert ev.canary_value == pytest.approx(0.3, abs=0.1) and ev.stable_value > 0.6


def test_tenant_tests_compare_the_versions_within_each_channel() -> None:
    """The canary serves far more sms than voice, and voice resolves far more: pooled over channels, a healthy
    canary would look worse in every tenant. Its tenant tests compare within channels, and stay quiet."""
    settings = Analysis(alpha=0.05, segments=("tenant",), max_segments=4,
                        metrics=(MetricOverride("resolution_rate"),))
    law = healthy_law(len(TENANTS))
    law.rates[:, :, RATE_METRICS.index("resolution_rate")] = np.array([0.5, 0.9, 0.4])[:, None]
    a = CanaryAnalysis("v1", "v2", settings)
    for step, buckets in rollout(np.random.default_rng(7), law, law, 60, 3000, weights=(0.3,)):
        a.observe(step, buckets)
    assert len(a.tests) == 1 + 4 + 1 and not any(t.alarm for t in a.tests.values())
    nc, kc, ns, ks = a.tests["resolution_rate[tenant=other]"].counts  # counts of misses, summed over channels
    pc, ps = kc / nc, ks / ns
    se = math.sqrt(pc * (1 - pc) / nc + ps * (1 - ps) / ns)
    assert pc - ps > 5 * se  # a comparison pooled over channels would blame the canary


# --- calibration and power -------------------------------------------------------------------------------
NULL_ROLLOUTS, NULL_STEPS, NULL_VOLUME = 200, 16, 100


@pytest.mark.slow
def test_null_rollouts_stay_within_the_family_wise_alpha() -> None:
    """200 healthy rollouts, 225 tests each: the share with any alarm is at most alpha (+3 SE)."""
    fraction, done = null_rollouts(SEGMENTED, NULL_ROLLOUTS, NULL_STEPS, NULL_VOLUME, seed=11)
    assert all(len(a.tests) == POOLED_TESTS * 9 for a in done)  # every test exists in every rollout
    assert all(math.fsum(t.alpha for t in a.tests.values()) <= SEGMENTED.alpha for a in done)
    assert fraction <= three_se(SEGMENTED.alpha, NULL_ROLLOUTS), fraction


@pytest.mark.slow
def test_a_harm_in_one_tenant_is_found_by_its_segment_test() -> None:
    segmented = [first_rollback(Analysis(segments=("channel", "tenant")), 100 + s) for s in range(POWER_SEEDS)]
    pooled = [first_rollback(Analysis(), 100 + s) for s in range(POWER_SEEDS)]
    assert all(acting for _, acting, _ in segmented)
    by_acme = [step for step, acting, _ in segmented if "escalation_rate[tenant=acme]" in acting]
    assert len(by_acme) >= POWER_SEEDS * 0.7
    # nothing is blamed on a tenant the harm did not touch
    for _, _, a in segmented:
        wrong = [n for n, t in a.tests.items() if t.alarm and "[tenant=" in n and "[tenant=acme]" not in n]
        assert not wrong
    # at alpha = 0.01 the segment test pays for its share of the budget, and still acts sooner than the pooled
    # test alone (the pooled test, at half its level, still acts when it is the first to see the harm)
    seg_steps = np.array([step for step, _, _ in segmented])
    pooled_steps = np.array([step for step, _, _ in pooled])
    assert np.median(seg_steps) < np.median(pooled_steps), (seg_steps, pooled_steps)
    assert np.sum(seg_steps <= pooled_steps) >= 0.8 * POWER_SEEDS, (seg_steps, pooled_steps)
