"""The decision-quality benchmark (benchmarks/decision_quality.py): its peer rules, its floor, its table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import decision_quality as dq


def test_bernoulli_floor_is_the_formula() -> None:
    p0, p1, r = 0.12, 0.36, 1.0
    kl = p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))
    assert math.isclose(dq.bernoulli_floor(p0, p1, r, 0.01), math.log(100) / (r * kl))
    assert math.isclose(dq.gaussian_floor(0.5, 1.0, 2.0, 0.01), math.log(100) / (2.0 * 0.125))
    assert dq.bernoulli_floor(p0, 0.24, r) > dq.bernoulli_floor(p0, p1, r), "a smaller shift takes longer"


def test_simulated_floor_of_an_escalation_fault_matches_the_rates() -> None:
    # escalation x3 on ~12%: about log(100) / (1/s * KL(0.36 || 0.12)) ~ 25 s at one canary interaction per s
    assert 15 < dq.floor("escalation") < 40


def test_kayenta_rule_flags_an_obvious_shift_and_not_identical_samples() -> None:
    rng = np.random.default_rng(1)
    stable = rng.normal(1.0, 0.1, 20)
    assert dq.mann_whitney_fails(stable, stable + 1.0)
    assert not dq.mann_whitney_fails(stable, stable.copy())
    assert not dq.mann_whitney_fails(stable, stable - 1.0), "one-sided: an improvement is not a failure"
    assert dq.mann_whitney_fails(stable, stable - 1.0, decrease=True)


def test_flagger_rule_rolls_back_at_the_fifth_failed_check() -> None:
    values = {"error": np.array([[0.01] * 10, [0.01, 0.05, 0.01, 0.05, 0.05, 0.01, 0.05, 0.05, 0.05, 0.05]])}
    assert dq.flagger(values) == 60.0 * 8  # failures at minutes 2, 4, 5, 7, 8: the fifth ends minute 8
    assert dq.flagger({"error": np.full((2, 10), 0.01)}) is None


def test_quick_mode_prints_the_table(capsys: object) -> None:
    text = dq.main(["--quick"])
    lines = text.splitlines()
    assert lines[0].startswith("| fault | runs | floor (s) |") and all(r in lines[0] for r in dq.RULES)
    assert [line.split("|")[1].strip() for line in lines[2:]] == [
        "healthy (half with an incident)", "escalation", "latency", "all faults"]
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "floor at vigil's threshold (s)" in lines[0]
    vigil_cells = [line.split("|")[5].strip() for line in lines[3:]]
    assert all(cell.endswith(", 0") for cell in vigil_cells), "no false rollback by vigil before the onset"


def test_category_faults_have_a_floor_and_are_caught_by_a_category_alert() -> None:
    # tech_support x2 on ~17%: KL(0.33 || 0.17) ~ 0.07 nats a canary interaction; the other model: at once
    assert 30 < dq.floor("intent_shift") < 120
    assert 0.9 < dq.floor("model_switch") < 1.2
    result = dq.run_one(dq.Run("model_switch", 60.0, 5, 600.0))
    assert result["vigil"] is not None and result["vigil_category_alert"] == result["vigil"]
    assert 60.0 <= result["vigil"] < 120.0


def test_the_floor_at_vigils_threshold_is_what_its_test_must_reach() -> None:
    # escalation_rate: log(1/level) at its share of the budget, log 2 for its first start, log 12 for the mixture
    t = dq.vigil_threshold("escalation")
    assert t > math.log(1 / dq.ALPHA) + math.log(2) + math.log(12)
    assert dq.vigil_threshold("escalation", '{"alpha": 0.05}') == pytest.approx(t - math.log(5))
    # escalation weighs 2 in the budget, latency 1: latency's tests need log 2 more
    assert dq.vigil_threshold("latency") - t >= math.log(2) - 1e-9
