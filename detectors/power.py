"""How many canary observations a rate test needs before a harm of a given size would have been caught.

Used to promote only on evidence: a rollout step passes when each critical test has seen enough canary data
that a harm of the configured size (an odds ratio, or an absolute increase of the harmful share when that is
larger) would have reached the test's threshold with the configured probability.

The approximation, stated: at the harmful share ``p1`` against the stable share ``p0``, the log-likelihood
ratio of ``n`` canary observations has mean ``n * KL(p1 || p0)`` and variance ``n * V`` (``V`` the variance of
one observation's log-likelihood ratio under ``p1``); it is taken as normal, and both are scaled by the share
of the information a conditional test keeps when the stable side is estimated too (``n_s / (n_s + n_c)``).
Caught by ``n`` with probability ``power`` when ``n KL - z sqrt(n V) >= threshold``, ``z`` the normal
quantile of ``power``. The mixture over odds ratios costs the test a little more than the likelihood ratio
at the true effect, which is why the threshold passed in should include that cost.
"""

from __future__ import annotations

import math

from scipy.stats import norm

__all__ = ["harmful_share", "samples_to_catch"]


def harmful_share(p0: float, odds_ratio: float, increase: float) -> float:
    """The harmful share a harm of ``odds_ratio`` (or ``+increase``, when larger) makes of ``p0``.

    >>> round(harmful_share(0.1, 2.0, 0.01), 4), round(harmful_share(0.001, 2.0, 0.01), 4)
    (0.1818, 0.011)
    """
    if not 0.0 <= p0 < 1.0:
        raise ValueError(f"p0 must be in [0, 1), got {p0!r}")
    if odds_ratio <= 1.0:
        raise ValueError(f"odds_ratio must be > 1, got {odds_ratio!r}")
    if not 0.0 < increase < 1.0:
        raise ValueError(f"increase must be in (0, 1), got {increase!r}")
    by_odds = p0 * odds_ratio / (1.0 - p0 + p0 * odds_ratio)
    return min(max(by_odds, p0 + increase), 1.0 - 1e-9)


def samples_to_catch(p0: float, p1: float, threshold: float, power: float, efficiency: float = 1.0) -> float:
    """Canary observations after which a harmful share ``p1`` (against ``p0``) would have brought the log
    likelihood ratio to ``threshold`` with probability ``power``; ``efficiency`` in (0, 1] scales the
    information per observation (see the module's docstring). ``inf`` when ``p1 <= p0``.

    >>> round(samples_to_catch(0.1, 0.2, math.log(100), 0.9))
    252
    >>> round(samples_to_catch(0.1, 0.2, math.log(100), 0.9, efficiency=0.5))  # half the information: twice
    505
    """
    if not 0.5 <= power < 1.0:
        raise ValueError(f"power must be in [0.5, 1), got {power!r}")
    if not 0.0 < efficiency <= 1.0:
        raise ValueError(f"efficiency must be in (0, 1], got {efficiency!r}")
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    if not 0.0 <= p0 < 1.0 or not 0.0 < p1 < 1.0:
        raise ValueError(f"shares must be in [0, 1), got p0={p0!r}, p1={p1!r}")
    if p1 <= p0:
        return math.inf
    p0 = max(p0, 1e-12)  # an outcome stable never had: each harmful canary observation is strong evidence
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    kl = efficiency * (p1 * up + (1 - p1) * down)
    var = efficiency * p1 * (1 - p1) * (up - down) ** 2
    z = float(norm.ppf(power))
    # n KL - z sqrt(n V) = threshold, a quadratic in sqrt(n)
    root = (z * math.sqrt(var) + math.sqrt(z * z * var + 4 * kl * threshold)) / (2 * kl)
    return root * root
