"""detectors.power: the canary observations after which a harm of a given size would have been caught, and a
simulation that the mixture Fisher test does catch it by then with at least the stated probability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.mixture_fisher import MixtureFisherTest
from detectors.power import harmful_share, samples_to_catch


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"p0": -0.1, "odds_ratio": 2.0, "increase": 0.01}, "p0"),
    ({"p0": 0.1, "odds_ratio": 1.0, "increase": 0.01}, "odds_ratio"),
    ({"p0": 0.1, "odds_ratio": 2.0, "increase": 0.0}, "increase"),
])
def test_harmful_share_names_the_bad_parameter(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        harmful_share(**kwargs)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"power": 0.4}, "power"), ({"efficiency": 0.0}, "efficiency"), ({"threshold": 0.0}, "threshold"),
    ({"p1": 1.0}, "shares"),
])
def test_samples_to_catch_names_the_bad_parameter(kwargs: dict[str, float], name: str) -> None:
    args = {"p0": 0.1, "p1": 0.2, "threshold": 5.0, "power": 0.9, **kwargs}
    with pytest.raises(ValueError, match=name):
        samples_to_catch(**args)


def test_more_power_a_smaller_harm_or_less_information_need_more_samples() -> None:
    n = samples_to_catch(0.1, 0.2, 8.0, 0.9)
    assert samples_to_catch(0.1, 0.2, 8.0, 0.99) > n > samples_to_catch(0.1, 0.3, 8.0, 0.9)
    assert samples_to_catch(0.1, 0.2, 8.0, 0.9, efficiency=0.5) == pytest.approx(2 * n)
    assert samples_to_catch(0.1, 0.1, 8.0, 0.9) == math.inf
    assert samples_to_catch(0.0, 0.01, 8.0, 0.9) < 400  # an outcome stable never has: a few hundred


@pytest.mark.slow
@pytest.mark.parametrize(("p0", "odds_ratio"), [(0.1, 2.0), (0.02, 3.0)])
def test_the_test_catches_the_harm_by_then_with_at_least_the_stated_power(p0: float, odds_ratio: float) -> None:
    """Canary and stable (9 stable per canary observation) in strata of 30 canary observations; at the number
    of observations samples_to_catch gives for the analysis' threshold (level, first start, mixture), the
    fraction of streams already in alarm is at least the power, less 3 standard errors."""
    power, streams = 0.9, 300
    rng = np.random.default_rng(41)
    probe = MixtureFisherTest(alpha=0.001, change_every=2)
    p1 = harmful_share(p0, odds_ratio, 0.001)
    threshold = probe.threshold + math.log(2.0) + math.log(probe.log_psi.size)
    need = samples_to_catch(p0, p1, threshold, power, efficiency=0.9)
    per, strata = 30, math.ceil(need / 30)
    caught = 0
    for _ in range(streams):
        t = MixtureFisherTest(alpha=0.001, change_every=2)
        kc = rng.binomial(per, p1, strata)
        ks = rng.binomial(9 * per, p0, strata)
        t.update_many(np.full(strata, per), kc, np.full(strata, 9 * per), ks)
        caught += t.alarm
    assert caught / streams >= power - 3 * math.sqrt(power * (1 - power) / streams)
