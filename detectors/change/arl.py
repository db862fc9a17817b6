"""ARL and threshold numerics of the log-likelihood-ratio CUSUM ``S_t = max(0, S_{t-1} + z_t)``, alarm at ``S_t >= h``.

The threshold ``h`` of a detector is computed from ``arl``, the average run length to a false alarm on an
in-control stream:

* **Lorden's bound** holds for any CUSUM of log-likelihood ratios with a known pre-change law:
  ``ARL >= exp(h)``, so ``h = log(arl)`` is always safe, but conservative (the real ARL is several times
  larger, which costs detection delay).
* For the Gaussian, the exact ARL of the one-sided CUSUM is the solution of a Fredholm integral equation,
  solved here by Nystrom's method (composite Gauss-Legendre, 12 nodes per 4 standard deviations of the
  increment; relative error below 1e-5), and ``h`` is its root (:func:`gaussian_arl`,
  :func:`gaussian_threshold`). Siegmund's approximation ``(exp(-2 m b) + 2 m b - 1) / (2 m^2)`` with
  ``b = h / sd + 1.166`` (:func:`siegmund_arl`) is not used for the known-parameter threshold: it overstates
  the ARL by 0.8 % at ``delta = 1``, 6 % at ``delta = 2`` and 50 % at ``delta = 4`` (checked against the
  integral equation), so a threshold taken from it would miss the target.
* With parameters estimated from a warm-up, :func:`gaussian_threshold_est` raises the known-parameter
  threshold until criteria over simulated warm-ups hold (see :class:`~detectors.change.cusum_gaussian.GaussianCUSUM`),
  the warm-ups estimated as the detectors do (:func:`robust_rows`).
* For the Bernoulli, the increments take two values; rounding the upward one *up* to a fine lattice gives a
  CUSUM that is pathwise at least as large, whose ARL is the exact solution of a banded linear system
  (a Markov chain on the lattice). That is a rigorous lower bound on the real ARL, within a few percent of
  it, and ``h`` is the smallest lattice threshold whose bound reaches ``arl`` (Lorden's ``h``
  when the lattice would be too large: rates below about 1e-4): :func:`bernoulli_threshold`.

Two-sided Gaussian: the two one-sided CUSUMs each get the threshold for ``2 * arl``, from
``1/ARL = 1/ARL_up + 1/ARL_down`` (Van Dobben de Bruyn's relation; confirmed by simulation here).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import solve_banded
from scipy.optimize import brentq
from scipy.special import ndtr

__all__ = ["H_MAX", "LOW_FRACTION", "LOW_QUANTILE", "bernoulli_steps", "bernoulli_threshold", "gaussian_arl",
           "gaussian_threshold", "gaussian_threshold_est", "robust_rows", "siegmund_arl"]

F64 = NDArray[np.float64]

H_MAX = 2.0**12  # largest threshold allowed, in nats (also keeps the fixed-point sums far from overflow)
_MAD = 1.482602218505602  # 1 / Phi^-1(3/4): the MAD of a Gaussian is 0.6745 sigma
_SEED = 0x5EED_C05  # fixed seed of the warm-up simulations behind the estimated-parameter thresholds
_TWO_SIDED = 1.01  # margin on Van Dobben de Bruyn's relation (simulation: it is exact to about 0.3 %)
_TRUNCATE = 10.0  # the estimated-parameter criterion counts a run longer than 10 * arl as 10 * arl
LOW_QUANTILE = 0.1  # estimated parameters: at least 90 % of the warm-ups give a segment whose ARL ...
LOW_FRACTION = 0.5  # ... is at least this fraction of arl


def siegmund_arl(h: ArrayLike, mu: ArrayLike, sd: ArrayLike) -> F64:
    """Siegmund's approximation of the ARL of ``S_t = max(0, S_{t-1} + z_t)``, ``z ~ N(mu, sd**2)``, from 0.

    Vectorized over its arguments. Accurate to 1e-4 for a small drift ``|mu| / sd`` (under 0.05), to about
    1 % at 0.5, and worse beyond (see the module docstring).

    >>> round(float(siegmund_arl(4.0, -0.5, 1.0)), 1)  # the exact value is 336.0
    338.1
    """
    m = np.asarray(mu, dtype=np.float64) / np.asarray(sd, dtype=np.float64)
    b = np.asarray(h, dtype=np.float64) / np.asarray(sd, dtype=np.float64) + 1.166
    x = np.minimum(-2.0 * m * b, 700.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (np.expm1(x) - x) / (2.0 * m * m)
    return np.asarray(np.where(np.abs(m) < 1e-8, b * b, out), dtype=np.float64)


_PANEL = 4.0  # Nystrom panels of 4 increment standard deviations, 12 Gauss-Legendre nodes each ...
_PANELS = 8  # ... and at most 8 of them: 97 unknowns (larger dense solves are slow with threaded BLAS)


@functools.lru_cache(maxsize=1)
def _legendre() -> tuple[F64, F64]:
    g, w = np.polynomial.legendre.leggauss(12)
    return np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)


def _nystrom_arl(h: float, mu: float, sd: float) -> float:
    panels = max(2, math.ceil(h / (_PANEL * sd)))
    g, w = _legendre()
    edges = np.linspace(0.0, h, panels + 1)
    half = (edges[1:] - edges[:-1]) / 2.0
    y = ((edges[:-1] + half)[:, None] + half[:, None] * g[None, :]).ravel()
    wy = (half[:, None] * w[None, :]).ravel()
    pts = np.concatenate([[0.0], y])
    q = (y[None, :] - pts[:, None] - mu) / sd
    a = np.eye(pts.size)
    a[:, 1:] -= np.exp(-0.5 * q * q) * (wy / (sd * math.sqrt(2.0 * math.pi)))[None, :]
    a[:, 0] -= ndtr((-pts - mu) / sd)
    return float(np.linalg.solve(a, np.ones(pts.size))[0])


def gaussian_arl(h: float, mu: float, sd: float) -> float:
    """The in-control ARL of ``S_t = max(0, S_{t-1} + z_t)``, ``z ~ N(mu, sd**2)``, alarm at ``S >= h``, from 0.

    Solves the ARL's integral equation ``L(u) = 1 + L(0) Phi((-u - mu)/sd) + int_0^h L(y) phi_z(y - u) dy``
    by Nystrom's method (relative error below 1e-5). Beyond ``h = 32 sd`` or an ARL of about 1e10 it returns
    Siegmund's approximation times the exact-to-Siegmund ratio there (a ratio that hardly moves with h),
    divided by 1.001.

    >>> round(gaussian_arl(4.0, -0.5, 1.0), 1)  # k = 0.5, h = 4; a simulation of 10**6 runs: 335.2 +- 0.3
    335.4
    """
    if h <= 0:
        return 1.0
    top = _PANEL * _PANELS * sd
    m = mu / sd
    if m < -1e-3:  # keep the exact solve below an ARL of about 1e10, where it stays well conditioned
        top = min(top, (math.log(1e10 * 2.0 * m * m) / (-2.0 * m) - 1.166) * sd)
    if h <= top or top <= 0:
        return _nystrom_arl(h, mu, sd)
    ratio = _nystrom_arl(top, mu, sd) / float(siegmund_arl(top, mu, sd))
    return float(siegmund_arl(h, mu, sd)) * ratio / 1.001


@functools.lru_cache(maxsize=512)
def gaussian_threshold(arl: float, delta: float) -> float:
    """The threshold (nats) at which a one-sided Gaussian LLR CUSUM for a shift of ``delta`` sigma has ARL ``arl``.

    The increments are ``delta * u - delta**2 / 2`` with ``u ~ N(0, 1)`` in control; the root of
    :func:`gaussian_arl` (nudged up so that the ARL is at least ``arl``). Never above Lorden's ``log(arl)``.

    >>> round(gaussian_threshold(10_000.0, 1.0), 3), round(math.log(10_000.0), 3)
    (7.361, 9.21)
    """
    mu, sd = -delta * delta / 2.0, delta
    hi = math.log(arl)

    def f(h: float) -> float:
        return math.log(gaussian_arl(h, mu, sd)) - math.log(arl)

    lo = 1e-9
    if f(lo) >= 0:
        return lo
    h = float(brentq(f, lo, hi, xtol=1e-12, rtol=1e-12))
    while f(h) < 0:
        h = math.nextafter(h, math.inf) + 1e-12
    return min(h, hi)


def robust_rows(w: F64) -> tuple[F64, F64]:
    """Median and scale (1.4826 MAD) of each row; a zero MAD falls back to the standard deviation, and a
    constant row to a scale of 1e-9 * max(1, |median|), so that any later different value is a clear change."""
    med = np.median(w, axis=1)
    scale = _MAD * np.median(np.abs(w - med[:, None]), axis=1)
    flat = scale == 0.0
    if np.any(flat):
        sd = np.std(w, axis=1, ddof=1) if w.shape[1] > 1 else np.zeros(w.shape[0])
        scale = np.where(flat, sd, scale)
        scale = np.where(scale == 0.0, 1e-9 * np.maximum(1.0, np.abs(med)), scale)
    return med, scale


@functools.lru_cache(maxsize=64)
def _warmup_draws(warmup: int, est_mu: bool, est_sigma: bool) -> tuple[F64, F64]:
    """Standardized warm-up estimates ``(mu_hat - mu) / sigma`` and ``sigma_hat / sigma`` from simulated
    Gaussian warm-ups, with the detector's own estimator: their law does not depend on ``mu`` or ``sigma``."""
    rng = np.random.default_rng(_SEED)
    draws = min(8192, max(512, 8_000_000 // warmup))
    med, scale = robust_rows(rng.standard_normal((draws, warmup)))
    m = med if est_mu else np.zeros(draws)
    s = scale if est_sigma else np.ones(draws)
    return m, s


def _truncated_mean_rl(warmup: int, L: F64, horizon: float) -> float:
    """Mean of ``min(run length, horizon)`` when each run is a warm-up and then a geometric-like wait of mean L."""
    rest = horizon - warmup
    if rest <= 0:
        return horizon
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        tail = np.where(np.isfinite(L), L * -np.expm1(-rest / L), rest)
    return float(warmup + np.mean(np.minimum(tail, rest)))


@functools.lru_cache(maxsize=256)
def gaussian_threshold_est(arl: float, delta: float, up: bool, down: bool, warmup: int, est_mu: bool,
                            est_sigma: bool, low_fraction: float = LOW_FRACTION) -> float:
    """The Gaussian threshold when ``mu`` and/or ``sigma`` come from a warm-up (see
    :class:`~detectors.change.cusum_gaussian.GaussianCUSUM`).

    The known-parameter threshold, raised until (i) the conditional ARL given the warm-up's estimates is at
    least ``low_fraction * arl`` for at least 90 % of the warm-ups (``LOW_QUANTILE``), (ii) it is at least
    ``arl`` for at least half of them, and (iii) the mean of ``min(run length, 10 * arl)`` over warm-ups is at
    least ``arl``. Conditional ARLs: Siegmund's approximation for the Gaussian increments the estimates give,
    scaled by the exact-to-Siegmund ratio at the true parameters (within 1.3 % of the integral equation on the
    lower half of the warm-ups: ``benchmarks/calibration_change.py --warmup``). ``low_fraction=0`` leaves (i)
    out: the rule before (i) was added, for comparisons.
    """
    two = up and down
    h0 = gaussian_threshold(2.0 * _TWO_SIDED * arl if two else arl, delta)
    if not (est_mu or est_sigma):
        return h0
    m, s = _warmup_draws(warmup, est_mu, est_sigma)
    horizon = _TRUNCATE * arl
    sd = delta / s
    mu_up = -delta * m / s - delta * delta / 2.0
    mu_down = delta * m / s - delta * delta / 2.0

    nominal = -delta * delta / 2.0

    def conditional_arls(h: float) -> F64:
        fix = gaussian_arl(h, nominal, delta) / float(siegmund_arl(h, nominal, delta))
        inv = np.zeros(m.size)
        if up:
            inv += 1.0 / (siegmund_arl(h, mu_up, sd) * fix)
        if down:
            inv += 1.0 / (siegmund_arl(h, mu_down, sd) * fix)
        with np.errstate(divide="ignore"):
            return np.asarray(1.0 / inv, dtype=np.float64)

    def low_ok(h: float) -> float:
        if low_fraction <= 0:
            return 0.0
        return math.log(float(np.quantile(conditional_arls(h), LOW_QUANTILE))) - math.log(low_fraction * arl)

    def median_ok(h: float) -> float:
        return math.log(float(np.median(conditional_arls(h)))) - math.log(arl)

    def mean_ok(h: float) -> float:
        return _truncated_mean_rl(warmup, conditional_arls(h), horizon) - arl

    h = h0
    for crit in (low_ok, median_ok, mean_ok):  # each grows with h: the result is the largest of their roots
        if crit(h) >= 0:
            continue
        hi = h
        while crit(hi) < 0:
            hi = 1.5 * hi + 1.0
            if hi > H_MAX:
                raise ValueError(f"warmup={warmup} is too short to reach arl={arl}: use a longer warm-up or give "
                                 "mu and sigma")
        h = float(brentq(crit, h, hi, xtol=1e-9))
    return h


def bernoulli_steps(p0: float, p1: float) -> tuple[float, float]:
    """Log-likelihood-ratio increments of an event (x=1) and a non-event (x=0), p1 against p0."""
    return math.log(p1 / p0), math.log1p(-p1) - math.log1p(-p0)


def _lattice_arl(ju: int, jd: int, pu: float, n: int) -> float:
    """ARL from 0 of a CUSUM on the integers: +ju with probability pu, else -jd (floored at 0); alarm at >= n.

    Solves the banded system ``L_i = 1 + pu L_{i+ju} + (1-pu) L_{max(0, i-jd)}`` (``L = 0`` at or above n),
    ordered so that the narrower band is the lower one (LAPACK's banded LU costs ``n * kl * (kl + ku)``).
    """
    i = np.arange(n)
    rows = [i, i, i[i + ju < n]]
    cols = [i, np.maximum(i - jd, 0), i[i + ju < n] + ju]
    vals = [np.ones(n), np.full(n, -(1.0 - pu)), np.full(int(np.count_nonzero(i + ju < n)), -pu)]
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    flip = ju < jd  # reversed order puts the up-jumps below the diagonal
    if flip:
        r, c = n - 1 - r, n - 1 - c
    kl = int(np.max(r - c, initial=0))
    ku = int(np.max(c - r, initial=0))
    ab = np.zeros((kl + ku + 1, n))
    np.add.at(ab, (ku + r - c, c), v)
    sol = solve_banded((kl, ku), ab, np.ones(n), check_finite=False)
    return float(sol[n - 1] if flip else sol[0])


_LATTICE_BUDGET = 2.0e6  # flops of one banded solve (a few ms); beyond it, Lorden's bound


def _smallest_reaching(log_arl: Callable[[int], float], target: float, lo: int, log_lo: float, hi: int,
                       log_hi: float) -> int:
    """The smallest n in (lo, hi] with ``log_arl(n) >= target``, given ``log_arl(lo) < target <= log_arl(hi)``
    and a log ARL that grows with n, nearly linearly: interpolation, with bisection when it stalls."""
    interpolate = True
    while hi - lo > 1:
        width = hi - lo
        if interpolate:
            mid = lo + round((target - log_lo) / (log_hi - log_lo) * width)
            mid = min(hi - 1, max(lo + 1, mid))
        else:
            mid = (lo + hi) // 2
        value = log_arl(mid)
        if value >= target:
            hi, log_hi = mid, value
        else:
            lo, log_lo = mid, value
        interpolate = hi - lo <= width // 2 or not interpolate
    return hi


@functools.lru_cache(maxsize=4096)
def bernoulli_threshold(p0: float, p1: float, arl: float) -> float:
    """Threshold (nats) of the Bernoulli LLR CUSUM ``p0 -> p1`` whose ARL is at least ``arl`` when the rate is p0.

    The increments take two values, ``+up`` and ``-down``. On a lattice of step ``small / J`` (``small`` the
    smaller of the two, so that it lies exactly on the lattice), ``up`` is rounded up and ``down`` rounded
    down: the lattice CUSUM is pathwise at least the real one, so its exact ARL (a banded linear system) is
    a rigorous lower bound of the real ARL, and tight (``J`` is chosen so that the larger increment falls
    nearly on the lattice too). The result is the smallest lattice threshold whose bound reaches ``arl``
    (searched on a coarse lattice first, then refined), and never above Lorden's ``log(arl)``, which it
    falls back to when the lattice would be too large (rates below about 1e-4).

    >>> round(bernoulli_threshold(0.2, 0.4, 10_000.0), 3), round(math.log(10_000.0), 3)
    (6.447, 9.21)
    """
    lorden = math.log(arl)
    u1, u0 = bernoulli_steps(p0, p1)
    up, down, pu = (u1, -u0, p0) if u1 > 0 else (u0, -u1, 1.0 - p0)
    small, large = min(up, down), max(up, down)
    rho = large / small

    def cost(jj: int) -> float:
        return lorden * jj / small * jj * (jj + jj * rho + 1.0)

    def lattice(jj: int) -> tuple[float, int, int, float]:
        if up <= down:  # up is exact (rounded up by a hair); down rounded down
            step = up / jj * (1.0 + 1e-12)
            jd = math.floor(down / step * (1.0 - 1e-12))
            return (down - jd * step) * (1.0 - pu), jj, jd, step
        step = down / jj * (1.0 - 1e-12)  # down is exact (rounded down by a hair); up rounded up
        ju = math.ceil(up / step * (1.0 + 1e-12))
        return (ju * step - up) * pu, ju, jj, step

    j_max = max((jj for jj in range(1, 33) if cost(jj) <= _LATTICE_BUDGET), default=0)
    if j_max == 0:
        return lorden
    _, ju, jd, step = min(lattice(jj) for jj in range((j_max + 1) // 2, j_max + 1))

    def log_arl(n: int) -> float:
        return math.log(_lattice_arl(ju, jd, pu, n)) if n > 0 else 0.0

    # a first guess from a coarse lattice (64 times cheaper), then a bracket around it on the fine one
    j_c = max(1, j_max // 4)
    _, ju_c, jd_c, step_c = lattice(j_c)
    n_c = math.ceil(lorden / step_c)
    if math.log(_lattice_arl(ju_c, jd_c, pu, n_c)) < lorden:
        guess = lorden
    else:
        n = _smallest_reaching(lambda k: math.log(_lattice_arl(ju_c, jd_c, pu, k)) if k > 0 else 0.0, lorden,
                               0, 0.0, n_c, lorden)
        guess = n * step_c
    hi = max(1, math.ceil(guess * 1.01 / step))
    log_hi = log_arl(hi)
    while log_hi < lorden:
        if hi * step > lorden:
            return lorden
        hi = math.ceil(hi * 1.1) + 1
        log_hi = log_arl(hi)
    lo = math.floor(hi * 0.97) - 1
    log_lo = log_arl(lo) if lo > 0 else 0.0
    while lo > 0 and log_lo >= lorden:
        lo = math.floor(lo * 0.9) - 1
        log_lo = log_arl(lo) if lo > 0 else 0.0
    lo = max(lo, 0)
    return min(_smallest_reaching(log_arl, lorden, lo, log_lo, hi, log_hi) * step, lorden)
