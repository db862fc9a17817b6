"""The category-share tests of the canary analysis (``spec.analysis.categorical``): tables, admission and its
cap, both directions, the budget, the checkpoint, and calibration under the null."""

from __future__ import annotations

import json
import math

import msgspec
import numpy as np
import pytest

from controller.analysis import categorical
from controller.analysis.canary import CanaryAnalysis
from controller.config import Analysis, Categorical, ConfigError, parse_rollout
from controller.ingest.buckets import OTHER, Bucket
from tests.support.categorical import MIX, rollout, run, shifted
from tests.support.family_wise import three_se

ALL = Analysis()


def settings(**categorical_settings: object) -> Analysis:
    return msgspec.structs.replace(ALL, categorical=msgspec.convert(categorical_settings, Categorical))


def test_a_shifted_intent_is_found_both_ways() -> None:
    rng = np.random.default_rng(1)
    up, first = run(ALL, rollout(rng, 300, 60.0, canary_mix=shifted(MIX, "tech_support", 2.0)))
    assert first is not None
    assert up.tests["intent_share[tech_support]"].alarm
    down, first = run(ALL, rollout(rng, 300, 60.0, canary_mix=shifted(MIX, "order_status", 0.4)))
    assert first is not None and down.tests["intent_share[order_status]"].alarm
    (ev,) = down.evidence(["intent_share[order_status]"])
    assert ev.canary_value is not None and ev.stable_value is not None and ev.canary_value < 0.7 * ev.stable_value
    assert ev.n_canary > 0 and ev.n_stable > ev.n_canary and ev.statistic >= ev.threshold


def test_tables_are_one_vs_rest_shares_of_the_fields_trials() -> None:
    a = CanaryAnalysis("v1", "v2", ALL)
    b = [Bucket("v2", "canary", "sms", 0, 4, categories={"intent": {"billing": 3, "refund": 1}}),
         Bucket("v1", "stable", "sms", 0, 10, categories={"intent": {"billing": 2, "refund": 7, "other": 1}})]
    assert a.categorical is not None
    keys, rows = a.categorical.tables(b, "v2", "v1")
    tables = {k.name: r for k, r in zip(keys, rows, strict=True)}
    assert tables == {"intent_share[refund]": (4, 1, 10, 7), "intent_share[billing]": (4, 3, 10, 2),
                      "intent_share[other]": (4, 0, 10, 1)}
    a.observe(0, b)
    assert a.evidence(["intent_share[billing]"])[0].canary_value == 0.75
    assert a.is_categorical("intent_share[billing]") and not a.is_categorical("escalation_rate")


def test_the_cap_holds_against_a_producer_sending_thousands_of_values() -> None:
    a = CanaryAnalysis("v1", "v2", settings(maxCategories=5))
    for step in range(50):
        fresh = {f"intent-{step}-{i}": 1 for i in range(200)}  # a new value per event
        a.observe(step, [Bucket("v2", "canary", "sms", step, 200, categories={"intent": fresh, "tool": fresh}),
                         Bucket("v1", "stable", "sms", step, 200, categories={"intent": fresh, "tool": fresh})])
    assert a.categorical is not None
    assert {f: len(v) for f, v in a.categorical.values.items() if v} == {"intent": 5, "tool": 5}
    assert len(a.tests) == 2 * (5 + 1)  # 5 values and other, per field
    nc, kc, ns, ks = a.tests["intent_share[other]"].counts
    assert (nc, ns) == (10_000, 10_000) and kc == ks == 10_000 - 5
    assert len(json.dumps(a.to_state())) < 100_000


def test_values_are_admitted_busiest_first() -> None:
    a = CanaryAnalysis("v1", "v2", settings(maxCategories=2))
    a.observe(0, [Bucket("v2", "canary", "sms", 0, 9, categories={"intent": {"a": 1, "b": 3, "c": 5}}),
                  Bucket("v1", "stable", "sms", 0, 9, categories={"intent": {"a": 4, "b": 3, OTHER: 2}})])
    # over both versions b has 6, a and c have 5 each (the name breaks the tie); "other" is never admitted
    assert a.categorical is not None and a.categorical.values["intent"] == ["b", "a"]
    assert sorted(a.tests) == ["intent_share[a]", "intent_share[b]", "intent_share[other]"]
    assert a.tests["intent_share[other]"].counts == (9, 5, 9, 2)


def test_fields_chooses_what_is_compared() -> None:
    buckets = list(rollout(np.random.default_rng(2), 200, 60.0, canary_mix=shifted(MIX, "tech_support", 2.5)))
    only_model, first = run(settings(fields=["model"]), iter(buckets))
    assert first is None and only_model.tests == {}
    off, first = run(settings(fields=[]), iter(buckets))
    assert first is None and off.categorical is None and off.tests == {}
    assert off.budget.alpha == pytest.approx(ALL.alpha)  # without categorical tests the others keep all of alpha
    on, first = run(settings(fields=["intent"]), iter(buckets))
    assert first is not None


def test_action_decides_whether_a_shift_is_critical() -> None:
    for action, critical in (("alert", False), ("rollback", True)):
        a, first = run(settings(action=action), rollout(np.random.default_rng(3), 200, 60.0,
                                                        canary_mix=shifted(MIX, "refund", 3.0)))
        assert first is not None
        assert a.is_critical("intent_share[refund]") is critical
        assert a.has_enough_samples("intent_share[refund]")


# --- the budget -----------------------------------------------------------------------------------------
def test_every_categorical_test_that_can_ever_exist_fits_in_its_share() -> None:
    s = msgspec.structs.replace(settings(maxCategories=3), alpha=0.1)
    a, _ = run(s, rollout(np.random.default_rng(4), 30, 60.0))
    assert a.categorical is not None
    budget = a.categorical.budget
    assert budget.alpha == pytest.approx(0.1 * categorical.SHARE)
    assert a.budget.alpha == pytest.approx(0.1 * (1 - categorical.SHARE))
    created = math.fsum(t.alpha for t in a.tests.values())
    assert 0 < created <= 0.1 * categorical.SHARE
    for f in s.categorical.fields:  # fill every slot of every field
        added = 0
        with pytest.raises(ValueError, match="pool the rest"):
            while True:
                budget.level(categorical.family(f), "category", f"x{added}")
                added += 1
        assert added <= 3 + 1
    assert budget.spent <= 0.1 * categorical.SHARE * (1 + 1e-12)
    assert a.budget.alpha + budget.alpha <= 0.1 * (1 + 1e-12)


def test_a_checkpoint_resumes_exactly_and_keeps_its_budget() -> None:
    buckets = list(rollout(np.random.default_rng(5), 240, 60.0, canary_mix=shifted(MIX, "account", 2.0)))
    whole, first = run(ALL, iter(buckets))
    assert first is not None
    cut = 90
    a = CanaryAnalysis("v1", "v2", ALL)
    for start, bs in buckets[:cut]:
        a.observe(start, bs)
    state = json.loads(json.dumps(a.to_state()))
    # resumed under a changed config: the fields, cap and budget it started with stay; the action is today's
    b = CanaryAnalysis("v1", "v2", settings(fields=["model"], maxCategories=1))
    b.load_state(state)
    assert b.categorical is not None and b.categorical.fields == ALL.categorical.fields
    for start, bs in buckets[cut:]:
        b.observe(start, bs)
    assert msgspec.json.encode(b.to_state()) == msgspec.json.encode(whole.to_state())


def test_a_checkpoint_without_categorical_tests_resumes_without_them() -> None:
    buckets = list(rollout(np.random.default_rng(6), 120, 60.0, canary_mix=shifted(MIX, "account", 3.0)))
    a = CanaryAnalysis("v1", "v2", ALL)
    state = a.to_state()
    del state["categorical"]  # as a version-2 checkpoint was written
    state["budget"]["alpha"] = ALL.alpha
    b = CanaryAnalysis("v1", "v2", ALL)
    b.load_state(state)
    for start, bs in buckets:
        assert b.observe(start, bs) == []
    assert b.categorical is None and b.tests == {} and b.budget.alpha == ALL.alpha


# --- the settings ---------------------------------------------------------------------------------------
def doc(categorical_settings: object) -> dict[str, object]:
    return {"apiVersion": "vigil.dev/v1alpha1", "kind": "AgentRollout",
            "spec": {"agent": "a", "stable": {"version": "v1"}, "canary": {"version": "v2"},
                     "analysis": {"categorical": categorical_settings}}}


@pytest.mark.parametrize(("given", "path", "says"), [
    ({"fields": ["intent", "intent"]}, "spec.analysis.categorical.fields[1]", "listed twice"),
    ({"fields": ["tenant"]}, "spec.analysis.categorical.fields[0]", "must be one of error_type, finish_reason, intent"),
    ({"action": "page"}, "spec.analysis.categorical.action", "must be one of alert, rollback"),
    ({"maxCategories": 0}, "spec.analysis.categorical.maxCategories", "between 1 and 100"),
    ({"maxCategories": 101}, "spec.analysis.categorical.maxCategories", "between 1 and 100"),
    ({"maxFields": 3}, "spec.analysis.categorical.maxFields", "unknown field"),
])
def test_invalid_settings_are_refused_naming_the_field(given: object, path: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_rollout(doc(given))
    assert err.value.path == path and says in err.value.message


def test_defaults_compare_every_field_and_alert() -> None:
    c = parse_rollout(doc({})).analysis.categorical
    assert c.fields == ("intent", "model", "finish_reason", "error_type", "tool") and c.action == "alert"
    assert c.max_categories == 20
    assert parse_rollout(doc({"fields": [], "action": "rollback"})).analysis.categorical.fields == ()


# --- calibration ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_null_rollouts_keep_the_categorical_false_alarms_within_their_share() -> None:
    """A healthy canary with the stable version's category mix in every channel, while the canary's share of
    traffic differs by channel and grows: the categorical tests alarm in at most their share of alpha of the
    rollouts (plus three binomial standard errors)."""
    s = msgspec.structs.replace(settings(fields=["intent"]), alpha=0.5)  # categorical share 0.1: measurable
    share = s.alpha * categorical.SHARE
    runs = 200
    rng = np.random.default_rng(2026)
    alarms = sum(run(s, rollout(rng, 200, 40.0))[1] is not None for _ in range(runs))
    assert alarms / runs <= three_se(share, runs)
