"""Page's CUSUM of log-likelihood ratios: a Gaussian mean shift and a Bernoulli rate change.

Both detectors run the Lindley recursion ``S_t = max(0, S_{t-1} + z_t)`` on log-likelihood-ratio
increments ``z_t = log f1(x_t) / f0(x_t)`` and alarm when ``S_t >= h``. The threshold ``h`` is computed from
``arl``, the average run length to a false alarm on an in-control stream:

* **Lorden's bound** holds for any CUSUM of log-likelihood ratios with a known pre-change law:
  ``ARL >= exp(h)``, so ``h = log(arl)`` is always safe, but conservative (the real ARL is several times
  larger, which costs detection delay).
* For the Gaussian, the exact ARL of the one-sided CUSUM is the solution of a Fredholm integral equation,
  solved here by Nystrom's method (composite Gauss-Legendre, 12 nodes per 4 standard deviations of the
  increment; relative error below 1e-5), and ``h`` is its root. Siegmund's approximation
  ``(exp(-2 m b) + 2 m b - 1) / (2 m^2)`` with ``b = h / sd + 1.166`` is not used for the known-parameter
  threshold: it overstates the ARL by 0.8 % at ``delta = 1``, 6 % at ``delta = 2`` and 50 % at ``delta = 4``
  (checked against the integral equation), so a threshold taken from it would miss the target.
* For the Bernoulli, the increments take two values; rounding the upward one *up* to a fine lattice gives a
  CUSUM that is pathwise at least as large, whose ARL is the exact solution of a banded linear system
  (a Markov chain on the lattice). That is a rigorous lower bound on the real ARL, within a few percent of
  it, and ``h`` is the smallest lattice threshold whose bound reaches ``arl`` (Lorden's ``h``
  when the lattice would be too large: rates below about 1e-4).

Two-sided Gaussian: the two one-sided CUSUMs each get the threshold for ``2 * arl``, from
``1/ARL = 1/ARL_up + 1/ARL_down`` (Van Dobben de Bruyn's relation; confirmed by simulation here).

Exactness of the vectorized path: the statistic is kept in fixed point (integer multiples of ``2**-30``,
increments rounded down, which can only delay an alarm, and clipped at +-16384 nats, which never changes
one). Integer sums are associative, so the prefix form ``S_t = C_t - min(0, min_{s<=t} C_s)`` (``C`` the
running sum, via ``np.cumsum`` and ``np.minimum.accumulate``) gives *exactly* the recursion's values:
``update_many`` and repeated ``update`` agree bit for bit, whatever the chunking. (Long blocks sum within
columns of 32 observations in float64, whose integers are exact below 2**53: see ``_Columns``.)
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import solve_banded
from scipy.optimize import brentq
from scipy.special import ndtr

from detectors.base import ChangeDetector, check_finite, check_positive, check_probability

__all__ = ["BernoulliCUSUM", "GaussianCUSUM", "bernoulli_threshold", "gaussian_arl", "gaussian_threshold",
           "siegmund_arl"]

Direction = Literal["up", "down", "both"]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

SCALE = 2.0**30  # fixed point: the statistic is an integer count of 2**-30 nats
_CLIP = 2.0**14 * SCALE  # increments are clipped to +-16384 nats (an alarm needs far less: _H_MAX)
_H_MAX = 2.0**12  # largest threshold allowed, in nats (also keeps int64 block sums far from overflow)
_BLOCK = 1 << 16  # observations per vectorized block: int64 sums stay below 2**63 (2**18 * 2**44 = 2**62)
# smallest block: after an alarm the next segment's blocks start at about a quarter of the last segment's length
# (small after a short one: alarms cluster after a change), and double up to _BLOCK
_FIRST_BLOCK = 256
_MAD = 1.482602218505602  # 1 / Phi^-1(3/4): the MAD of a Gaussian is 0.6745 sigma
_SEED = 0x5EED_C05  # fixed seed of the warm-up simulations behind the estimated-parameter thresholds
_TWO_SIDED = 1.01  # margin on Van Dobben de Bruyn's relation (simulation: it is exact to about 0.3 %)
_TRUNCATE = 10.0  # the estimated-parameter criterion counts a run longer than 10 * arl as 10 * arl
_LOW_QUANTILE = 0.1  # estimated parameters: at least 90 % of the warm-ups give a segment whose ARL ...
_LOW_FRACTION = 0.5  # ... is at least this fraction of arl


# -- thresholds --------------------------------------------------------------------------------------------
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


def _robust_rows(w: F64) -> tuple[F64, F64]:
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
    med, scale = _robust_rows(rng.standard_normal((draws, warmup)))
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
def _gaussian_threshold_est(arl: float, delta: float, up: bool, down: bool, warmup: int, est_mu: bool,
                            est_sigma: bool, low_fraction: float = _LOW_FRACTION) -> float:
    """The Gaussian threshold when ``mu`` and/or ``sigma`` come from a warm-up (see :class:`GaussianCUSUM`).

    The known-parameter threshold, raised until (i) the conditional ARL given the warm-up's estimates is at
    least ``low_fraction * arl`` for at least 90 % of the warm-ups (``_LOW_QUANTILE``), (ii) it is at least
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
        return math.log(float(np.quantile(conditional_arls(h), _LOW_QUANTILE))) - math.log(low_fraction * arl)

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
            if hi > _H_MAX:
                raise ValueError(f"warmup={warmup} is too short to reach arl={arl}: use a longer warm-up or give "
                                 "mu and sigma")
        h = float(brentq(crit, h, hi, xtol=1e-9))
    return h


def _bernoulli_steps(p0: float, p1: float) -> tuple[float, float]:
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
    u1, u0 = _bernoulli_steps(p0, p1)
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


# -- the fixed-point Lindley recursion ------------------------------------------------------------------------
def _quantize(t: F64, out: I64) -> None:
    """``floor(clip(t))`` into the int64 array ``out`` (``t`` may be overwritten; either may be a strided view)."""
    if t.size and (t.min() < -_CLIP or t.max() > _CLIP):
        np.clip(t, -_CLIP, _CLIP, out=t)
    np.floor(t, out=out, casting="unsafe")


def _q1(t: float) -> int:
    """The scalar twin of :func:`_quantize`."""
    return math.floor(_CLIP if t > _CLIP else (-_CLIP if t < -_CLIP else t))


def _split(t: F64, zu: I64 | None, zd: I64 | None, cu: int, cd: int) -> None:
    """The increments of both one-sided CUSUMs from one quantized term ``q = floor(clip(t))``: ``q - cu`` (up)
    into ``zu`` and ``-q - cd`` (down) into ``zd`` (``t`` may be overwritten; the outputs may be strided)."""
    first = zu if zu is not None else zd
    assert first is not None
    _quantize(t, first)
    if zd is not None:
        if zu is not None:
            np.negative(zu, out=zd)
        else:
            np.negative(zd, out=zd)
        zd -= cd
    if zu is not None:
        zu -= cu


def _lindley(z: I64, s0: int, m: I64) -> None:
    """In place: ``z[1:]`` holds increments (``z[0]`` is scratch); afterwards ``z[1:]`` holds the statistic.

    ``S_t = D_t - min(0, min_{s<=t} D_s)`` with ``D_t = s0 + z_1 + ... + z_t``: the Lindley recursion from s0.
    """
    z[0] = 0
    z[1] += s0
    np.cumsum(z, out=z)
    np.minimum.accumulate(z, out=m)
    np.subtract(z, m, out=z)


def _first_at_least(s: I64, h: int) -> int:
    if int(s.max()) < h:
        return -1
    return int(np.argmax(s >= h))


def _first_rows(z: I64, h: I64 | int) -> NDArray[np.intp]:
    """Rows of ``z[:, 1:]`` hold increments of independent fresh CUSUMs: the first index at or above h, or -1."""
    z[:, 0] = 0
    np.cumsum(z, axis=1, out=z)
    z -= np.minimum.accumulate(z, axis=1)
    hit = z[:, 1:] >= h
    first = np.argmax(hit, axis=1)
    first[~hit[np.arange(z.shape[0]), first]] = -1
    return np.asarray(first, dtype=np.intp)


_DENSE_GAP = 64  # two alarms in a row closer than this switch update_many to one observation at a time ...
_QUIET = 512  # ... until this many pass without one
_DENSE_CHUNK = 4096
_ROWS = 32  # column layout: observation t of a block is row t % 32 of column t // 32
_COLUMN_MIN = 8192  # blocks at least this long use the column layout
_TILE = 128  # columns per transposition tile: a cache-sized tile copies about twice as fast as one strided copy
_SAFE = 2.0**42  # column sums below this in size show that no term needed clipping (see _Columns)
_EXACT = 2.0**51  # sums across columns below this in size keep every quantity exact in float64 (see _Columns)


def _floor_clip(t: F64) -> None:
    """In place: ``floor(clip(t))``, the float twin of :func:`_quantize` (integers below 2**44: exact)."""
    if t.size and (t.min() < -_CLIP or t.max() > _CLIP):
        np.clip(t, -_CLIP, _CLIP, out=t)
    np.floor(t, out=t)


@functools.lru_cache(maxsize=64)
def _row_offsets(c: int, b: int) -> tuple[F64, ...]:
    """``-(i + 1) * c`` for the rows ``i < b``, as 0-d arrays (a ufunc takes them faster than Python floats)."""
    return tuple(np.array(-(i + 1) * float(c)) for i in range(b))


def _to_columns(src: F64, out: F64) -> None:
    """``out[i, j] = src[j * b + i]`` for ``out`` of shape (b, nb) (the cells past ``src`` are left alone)."""
    b = out.shape[0]
    full = src.size // b
    cols = src[:full * b].reshape(full, b)
    for j in range(0, full, _TILE):
        e = min(j + _TILE, full)
        np.copyto(out[:, j:e], cols[j:e].T)
    if full * b < src.size:
        out[:src.size - full * b, full] = src[full * b:]


class _Columns:
    """One one-sided CUSUM over a block in column layout: ``p[i, j]`` is the sum of the increments of observations
    ``j*b .. j*b + i``, so that ``D_t = carry[j] + p[i, j]`` with ``D_t = s0 + z_0 + ... + z_t``.

    numpy's 1-D accumulations run one element at a time (~5 ns each here); down the rows of a column layout
    the running sum and the running minimum are row-wide vector operations. ``p`` is float64 and exact: its
    values are integers below 2**50 (32 increments within +-2**44 when clipped; below 2**42 unclipped, which
    ``ok`` checks). The quantities across columns (``carry`` and the like) are float64 too while ``|carry|``
    stays below 2**51: then every one of them, and every statistic, is below 2**53, exact. Else int64.

    The statistic of the CUSUM that does not restart is ``S_t = D_t - min(0, min_{s<=t} D_s)``. In column j,
    with ``start[j]`` the statistic entering it and ``low_i = min(0, p[0..i, j])``, it is ``S = max(p + start,
    p - low)``: so a column can reach h only if ``max_i (p - low) + start[j] >= h``, a test on one reduction per
    column. Only those columns get the statistic itself; elsewhere it is computed on demand (at a restart).
    After a restart at ``r`` the statistic is ``S'_t = D_t - min(D_r, min_{r<s<=t} D_s)``; it equals the
    unrestarted one from the first ``t > r`` with ``D_t <= D_r - S_r`` on, so only that short stretch (or up
    to the next alarm) is computed.
    """

    def __init__(self, p: F64, rows: list[F64], s0: int, h: int, scratch: F64, srows: list[F64],
                 check: bool = False) -> None:
        b, nb = p.shape
        np.minimum(rows[0], 0.0, out=srows[0])
        for prev, cur, row in zip(srows, srows[1:], rows[1:], strict=False):
            np.minimum(row, prev, out=cur)
        low: NDArray[Any] = scratch[-1].copy()  # min(0, the column's minimum of p)
        np.subtract(p, scratch, out=scratch)  # p - low_i: the rise above the running minimum
        rise: NDArray[Any] = np.maximum.reduce(scratch, axis=0)
        #: With ``check``, the terms were not clipped: every ``|p| < 2**42`` (p <= rise, p >= low) shows that no
        #: increment reached 2**43, so none needed clipping (and the sums were exact). Else: redo, clipped.
        self.ok = not check or bool(np.maximum.reduce(rise) < _SAFE and np.minimum.reduce(low) > -_SAFE)
        if not self.ok:
            return
        # Across columns: in float64 too while the sums stay below 2**51 (all but extreme streams), else int64.
        # (ufunc methods, not their numpy wrappers: these vectors are short, and calls cost more than work)
        carry: NDArray[Any] = np.empty(nb)
        carry[0] = s0
        np.add.accumulate(p[-1, :-1], out=carry[1:])
        carry[1:] += s0
        exact = bool(np.maximum.reduce(carry) < _EXACT and np.minimum.reduce(carry) > -_EXACT)
        if not exact:
            low, rise = low.astype(np.int64), rise.astype(np.int64)
            carry = np.empty(nb, dtype=np.int64)
            carry[0] = 0
            np.cumsum(p[-1, :-1], out=carry[1:], dtype=np.int64)
            carry += s0
        self.cmin = carry + low  # the minimum of D within each column (with D just before it)
        ref = np.empty_like(carry)  # the minimum of D (and 0) before each column
        ref[0] = 0
        np.fmin.accumulate(np.fmin(self.cmin[:-1], 0), out=ref[1:])  # (fmin: no NaN to carry; it runs faster)
        start = carry - ref
        rise += start
        cols = np.nonzero(rise >= h)[0]
        if cols.size:  # the statistic in the columns that may reach h; every t where it does
            sc: NDArray[Any]
            if exact:
                sc = p[:, cols] + start[cols]
                np.maximum(sc, scratch[:, cols], out=sc)
            else:
                sc = p[:, cols].astype(np.int64)
                sc += start[cols]
                np.maximum(sc, scratch[:, cols].astype(np.int64), out=sc)
            hit = sc >= h
            k, i = np.nonzero(hit.T)  # in time order
            self.alarms: list[int] = (cols[k] * b + i).tolist()
        else:
            sc = np.empty((b, 0))
            self.alarms = []
        self.cols: list[int] = cols.tolist()
        # (values are exact integers in either dtype: the methods below read them as Python ints)
        self.p, self.carry, self.start, self.sc, self.b, self.h = p, carry, start, sc, b, h

    def at(self, t: int) -> int:
        j = t // self.b
        return int(self.p[t % self.b, j]) + int(self.carry[j])

    def unrestarted(self, t: int) -> int:
        """The statistic at t of the CUSUM that has not restarted in this block."""
        j, i = divmod(t, self.b)
        k = bisect.bisect_left(self.cols, j)
        if k < len(self.cols) and self.cols[k] == j:
            return int(self.sc[i, k])
        col = self.p[:i + 1, j].tolist()
        pi = int(col[-1])
        return max(pi + int(self.start[j]), pi - min(0, int(min(col))))

    def window(self, a: int, e: int) -> I64:
        """D for ``a <= t < e``, in time order."""
        b = self.b
        j0, j1 = a // b, (e - 1) // b + 1
        block = self.p[:, j0:j1].T.astype(np.int64, order="C")
        block += self.carry[j0:j1, None].astype(np.int64)
        return np.asarray(block.ravel()[a % b:a % b + e - a])

    def min_range(self, a: int, e: int) -> int:
        """The minimum of D over ``a <= t < e`` (``a < e``)."""
        b = self.b
        j0, r0 = divmod(a, b)
        j1, r1 = divmod(e - 1, b)
        least = np.minimum.reduce
        if j0 == j1:
            return int(least(self.p[r0:r1 + 1, j0])) + int(self.carry[j0])
        m = min(int(least(self.p[r0:, j0])) + int(self.carry[j0]),
                int(least(self.p[:r1 + 1, j1])) + int(self.carry[j1]))
        return min(m, int(least(self.cmin[j0 + 1:j1]))) if j1 > j0 + 1 else m

    def stat(self, t: int, r: int) -> int:
        """The statistic at t of the CUSUM last restarted at r (-1: not restarted in this block)."""
        if r < 0:
            return self.unrestarted(t)
        return self.at(t) - min(self.at(r), self.min_range(r + 1, t + 1))

    def first_unrestarted(self, t0: int, n: int) -> int:
        """The first ``t >= t0`` (and < n) where the unrestarted statistic reaches h; -1 if none."""
        k = bisect.bisect_left(self.alarms, t0)
        t = self.alarms[k] if k < len(self.alarms) else n
        return t if t < n else -1

    def next_alarm(self, r: int, n: int) -> int:
        """The first alarm after a restart at r (-1: from the block's start), or -1 if none before n."""
        if r < 0:
            return self.first_unrestarted(0, n)
        at_r = self.unrestarted(r)
        if at_r == 0:  # the unrestarted statistic is 0 at r too: the restart changes nothing
            return self.first_unrestarted(r + 1, n)
        b, h, p = self.b, self.h, self.p
        j = r // b
        c = int(self.carry[j])
        lo = int(p[r - j * b, j])  # D_r, the restarted CUSUM's running minimum, less the column's carry
        f = lo - at_r  # the unrestarted CUSUM's running minimum at r, likewise
        a = r + 1
        end = min(n, (j + 3) * b)
        while a < end:  # usually the restarted CUSUM catches up, or alarms, within a few observations
            j, i = divmod(a, b)
            shift, c = c - int(self.carry[j]), int(self.carry[j])
            f, lo = f + shift, lo + shift  # relative to this column's carry (ints: compared with floats, exactly)
            e = min(end, (j + 1) * b)
            for k, v in enumerate(p[i:i + e - a, j].tolist()):  # floats, exact integers below 2**50
                if v <= f:
                    return self.first_unrestarted(a + k, n)
                if v < lo:
                    lo = int(v)
                elif v >= lo + h:
                    return a + k
            a = e
        low, floor_ = lo + c, f + c
        w = 256
        while a < n:
            e = min(n, a + w)
            dw = self.window(a, e)
            m = np.minimum.accumulate(dw)
            np.minimum(m, low, out=m)
            up = np.flatnonzero(dw - m >= h)
            back = np.flatnonzero(dw <= floor_)
            if back.size and (not up.size or back[0] <= up[0]):
                return self.first_unrestarted(a + int(back[0]), n)  # the restarted CUSUM has caught up
            if up.size:
                return a + int(up[0])
            low, a, w = int(m[-1]), e, 4 * w
        return -1


def _check_finite(x: F64) -> None:
    with np.errstate(invalid="ignore", over="ignore"):  # (inf - inf, or a sum past 1e308: then look closer)
        total = float(np.add.reduce(x))
    if x.size and not math.isfinite(total) and not np.all(np.isfinite(x)):
        raise ValueError("observations must be finite numbers")


class _Cusum(ChangeDetector):
    """Shared machinery: one or two one-sided CUSUMs in fixed point, a warm-up after each (re)start, and the
    block loop of ``update_many``. Subclasses fill in the increments."""

    _up: bool = True
    _down: bool = False
    _h: float = math.inf
    #: The increments are ``q - _cu`` (up) and ``-q - _cd`` (down) with ``q = floor(clip(t))`` and ``t`` the
    #: term :meth:`_fill` computes, in units of 2**-30 nats (see :func:`_split`).
    _cu: int = 0
    _cd: int = 0
    #: The increments are a function of each observation alone (so they may be computed in any order).
    _elementwise: bool = True

    def __init__(self, arl: float) -> None:
        v = check_positive("arl", arl)
        if v <= 1.0:
            raise ValueError(f"arl must be > 1, got {arl!r}")
        self._arl = v
        self._block = _FIRST_BLOCK
        self._dense = False
        self._close = 0

    def reset(self) -> None:
        self._block = _FIRST_BLOCK
        self._dense = False  # alarms in quick succession: update_many goes one observation at a time
        self._close = 0  # alarms in a row that came close to the one before
        self._restart()

    # -- hooks ------------------------------------------------------------------------------------------------
    def _restart(self) -> None:
        """Start a new segment (after an alarm or a reset)."""
        self._s_up = self._s_down = 0
        self._n = 0
        self._alarm = False
        self._side: str | None = None

    def _ready(self) -> bool:
        return True

    def _invariant(self) -> bool:
        """Whether the increments stay the same across a restart (no warm-up, no running estimate)."""
        return False

    def _warm(self, x: F64) -> int:
        """Take warm-up observations from the front of ``x``; return how many were taken."""
        return 0

    def _fill(self, x: F64, t: F64) -> None:
        """Write the term ``t`` of the block ``x`` (see ``_cu``) into ``t`` (same length)."""
        raise NotImplementedError

    def _q_one(self, x: float) -> int:
        """``q`` for one observation, as :meth:`_fill` and ``_quantize`` give it."""
        raise NotImplementedError

    def _advance(self, k: int) -> None:
        """The first ``k`` observations of the last filled block were consumed."""

    def _first_alarm_rows(self, q: I64, w: int) -> NDArray[np.intp]:
        """Index of each row's first alarm, given its quantized terms ``q`` after a warm-up of ``w``
        (-1 for none): the earliest over the watched sides."""
        rows, cols = q.shape
        h = self._h_int()
        first = np.full(rows, -1, dtype=np.intp)
        z = np.empty((rows, cols + 1), dtype=np.int64)
        for side, on in ((1, self._up), (-1, self._down)):
            if on:
                np.subtract(side * q, self._cu if side > 0 else self._cd, out=z[:, 1:])
                f = _first_rows(z, h)
                first = np.where((first < 0) | ((f >= 0) & (f < first)), f, first)
        return np.where(first >= 0, first + w, -1).astype(np.intp)

    def _h_int(self) -> int:
        return math.ceil(self._h * SCALE) if math.isfinite(self._h) else 1 << 62

    # -- contract -----------------------------------------------------------------------------------------------
    @property
    def arl(self) -> float:
        return self._arl

    @property
    def statistic(self) -> float:
        """The larger of the one-sided statistics (nats; 0 during a warm-up)."""
        return max(self._s_up, self._s_down) / SCALE

    @property
    def threshold(self) -> float:
        return self._h

    @property
    def alarm_side(self) -> str | None:
        """``"up"`` or ``"down"``: which one-sided CUSUM raised the last alarm (None without an alarm)."""
        return self._side if self._alarm else None

    def update(self, x: float) -> bool:
        v = float(x)
        if not math.isfinite(v):
            raise ValueError(f"observations must be finite numbers, got {x!r}")
        if self._alarm:
            self._restart()
        self._n += 1
        if not self._ready():
            self._warm(np.array([v]))
            return False
        q = self._q_one(v)
        zu, zd = q - self._cu, -q - self._cd
        h = self._h_int()
        if self._up:
            s = self._s_up + zu
            self._s_up = s if s > 0 else 0
        if self._down:
            s = self._s_down + zd
            self._s_down = s if s > 0 else 0
        if self._s_up >= h:
            self._alarm, self._side = True, "up"
        elif self._s_down >= h:
            self._alarm, self._side = True, "down"
        return self._alarm

    def update_many(self, xs: ArrayLike) -> NDArray[np.intp]:
        x = np.ascontiguousarray(xs, dtype=np.float64).ravel()
        n = x.size
        # A refused batch leaves the detector as it was. A short one is checked first; a long one as it goes
        # (a pass over the data costs about 4 % here: the column layout's own checks find a non-finite value
        # for free), from a snapshot taken first.
        saved = (self._vars(), self._block, self._dense, self._close) if n > _BLOCK else None
        if saved is None:
            _check_finite(x)
        out: list[int] = []
        work: dict[str, tuple[F64, list[F64]]] = {}
        i = 0
        try:
            while i < n:
                if self._alarm:
                    self._restart()
                if not self._ready():
                    k = self._warm(x[i:])
                    if saved is not None:
                        _check_finite(x[i:i + k])
                    self._n += k
                    i += k
                    continue
                invariant = self._invariant()
                if invariant and self._dense:
                    chunk = x[i:i + _DENSE_CHUNK]
                    if saved is not None:
                        _check_finite(chunk)
                    alarms, used = self._scalar_run(chunk)
                else:
                    chunk = x[i:min(n, i + (_BLOCK if invariant else self._block))]
                    if chunk.size >= _COLUMN_MIN:
                        alarms, used = self._columns(chunk, invariant, work)
                    else:
                        if saved is not None:
                            _check_finite(chunk)
                        alarms, used = self._flat(chunk, invariant)
                out.extend(i + a for a in alarms)
                i += used
                if alarms and not invariant:  # the next segment's first block: a quarter of the last segment
                    self._block = min(_BLOCK, max(_FIRST_BLOCK, 1 << max(0, (self._n // 4).bit_length() - 1)))
                else:
                    self._block = min(2 * self._block, _BLOCK)
        except ValueError:
            if saved is not None:
                self._load(saved[0])
                self._block, self._dense, self._close = saved[1:]
            raise
        return np.asarray(out, dtype=np.intp)

    def _alarm_gap(self, invariant: bool, gap: int) -> None:
        """An alarm ``gap`` observations after the last restart: two in a row within ``_DENSE_GAP`` (a persistent
        change, not a pair of false alarms) switch update_many to one observation at a time."""
        self._close = self._close + 1 if invariant and gap < _DENSE_GAP else 0
        self._dense = self._close >= 2

    def _settle(self, stats: list[int], consumed: int, alarm: str | None) -> None:
        it = iter(stats)
        if self._up:
            self._s_up = next(it)
        if self._down:
            self._s_down = next(it)
        self._advance(consumed)
        self._alarm = alarm is not None
        self._side = alarm

    def _flat(self, x: F64, invariant: bool) -> tuple[list[int], int]:
        """A block with 1-D prefix sums; stops at the first alarm. Returns the alarms and the count consumed."""
        ln = x.size
        t = np.empty(ln)
        self._fill(x, t)
        z = [np.empty(ln + 1, dtype=np.int64) if on else None for on in (self._up, self._down)]
        _split(t, None if z[0] is None else z[0][1:], None if z[1] is None else z[1][1:], self._cu, self._cd)
        h = self._h_int()
        sides = [(name, zz, s0) for name, zz, s0 in (("up", z[0], self._s_up), ("down", z[1], self._s_down))
                 if zz is not None]
        scratch = np.empty(ln + 1, dtype=np.int64)
        stats, firsts = [], []
        for _name, zz, s0 in sides:
            _lindley(zz, s0, scratch)
            stats.append(zz[1:])
            firsts.append(_first_at_least(zz[1:], h))
        hits = [f for f in firsts if f >= 0]
        first = min(hits) if hits else -1
        at = first if first >= 0 else ln - 1
        side = sides[firsts.index(first)][0] if first >= 0 else None
        if first >= 0:
            self._alarm_gap(invariant, self._n + first + 1)
        self._settle([int(s[at]) for s in stats], at + 1, side)
        self._n += at + 1
        return ([first] if first >= 0 else []), at + 1

    def _scalar_run(self, x: F64) -> tuple[list[int], int]:
        """Alarms in quick succession (a persistent change): the recursion one observation at a time, on the
        same fixed-point increments, until ``_QUIET`` observations pass without an alarm."""
        ln = x.size
        t = np.empty(ln)
        self._fill(x, t)
        z = np.zeros((2, ln), dtype=np.int64)
        _split(t, z[0] if self._up else None, z[1] if self._down else None, self._cu, self._cd)
        zu, zd = z.tolist()
        h = self._h_int()
        su, sd, since = self._s_up, self._s_down, self._n
        alarms: list[int] = []
        side: str | None = None
        k = 0
        for k in range(ln):
            if side is not None:  # the restart after an alarm
                su = sd = since = 0
                side = None
            since += 1
            su += zu[k]
            if su < 0:
                su = 0
            sd += zd[k]
            if sd < 0:
                sd = 0
            if su >= h:
                side = "up"
            elif sd >= h:
                side = "down"
            if side is not None:
                alarms.append(k)
            elif since >= _QUIET:
                self._dense = False
                self._close = 0
                break
        self._settle([v for v, on in ((su, self._up), (sd, self._down)) if on], k + 1, side)
        self._n = since
        return alarms, k + 1

    def _columns(self, x: F64, invariant: bool, work: dict[str, tuple[F64, list[F64]]]) -> tuple[list[int], int]:
        """A block in column layout: every alarm when the increments are invariant (until they come in quick
        succession: then it stops at the last one), else the first. Returns the alarms and the count consumed.

        ``work`` keeps this call's scratch arrays (and their row views) from block to block (fresh large arrays
        cost page faults). The quantized terms ``q`` are float64 integers (exact), and so are the column
        prefix sums of the increments: both sides share ``q``'s, as ``-q - cd = -(q - cu) - (cu + cd)``.
        """
        ln = x.size
        b = _ROWS
        nb = -(-ln // b)
        pad = nb * b - ln

        def buf(key: str) -> tuple[F64, list[F64]]:
            got = work.get(key)
            if got is None or got[0].shape != (b, nb):
                a = np.empty((b, nb))
                got = work[key] = (a, list(a))
            return got

        q, rows = buf("q")
        scratch, srows = buf("scratch")
        h = self._h_int()
        cols: list[tuple[str, _Columns]] = []
        for clip in (False, True):  # clipping is rarely needed: the first pass shows whether it was
            # (the first pass is quiet: a value that overflows, or is not finite, makes it fail its check)
            with np.errstate(invalid="ignore", over="ignore") if not clip else np.errstate():
                if self._elementwise:  # transpose the observations once; the terms follow in layout order
                    if pad:
                        q[b - pad:, -1] = 0.0
                    _to_columns(x, q)
                    flat = q.reshape(-1)
                    self._fill(flat, flat)
                else:  # natural order in, column layout out
                    flat = np.empty(ln)
                    self._fill(x, flat)
                if clip:
                    _floor_clip(flat)
                else:
                    np.floor(flat, out=flat)
                if not self._elementwise:
                    _to_columns(flat, q)
                if pad:
                    q[b - pad:, -1] = 0.0  # past the block's end: increments -cu and -cd, which never alarm
                if self._up:
                    np.subtract(q, float(self._cu), out=q)
                else:
                    np.subtract(-float(self._cd), q, out=q)
                for prev, cur in zip(rows, rows[1:], strict=False):
                    np.add(cur, prev, out=cur)
                first = _Columns(q, rows, self._s_up if self._up else self._s_down, h, scratch, srows, not clip)
            if first.ok:
                break
            _check_finite(x)  # (a value that is not finite fails the first pass's check too)
        cols.append(("up" if self._up else "down", first))
        if self._up and self._down:  # the down side's column sums from the up side's, row by row
            pd, drows = buf("down")
            for off, src, dst in zip(_row_offsets(self._cu + self._cd, b), rows, drows, strict=True):
                np.subtract(off, src, out=dst)
            cols.append(("down", _Columns(pd, drows, self._s_down, h, scratch, srows)))
        alarms: list[int] = []
        r = -1
        stop = False
        # Each side's next alarm, and whether it is for the last restart. A stale one is a lower bound (a later
        # restart only lowers the statistic after it), so a side is brought up to date only when it might be
        # the next to alarm: after a false alarm on one side, the other side is usually left alone.
        nxt = [c.next_alarm(r, ln) for _, c in cols]
        fresh = [True] * len(cols)
        who = ""
        while True:
            pending = [(a, fresh[k], k) for k, a in enumerate(nxt) if a >= 0]
            if not pending:
                break
            best, is_fresh, k = min(pending)  # (on a tie, a stale side first; then "up" before "down")
            if not is_fresh:
                nxt[k], fresh[k] = cols[k][1].next_alarm(r, ln), True
                continue
            who = cols[k][0]
            fresh = [False] * len(cols)
            alarms.append(best)
            self._alarm_gap(invariant, best - r + (self._n if r < 0 else 0))
            stop = best == ln - 1 or not invariant or self._dense
            if stop:
                break
            r = best
        if stop:
            at, before = alarms[-1], (alarms[-2] if len(alarms) > 1 else -1)
            self._settle([c.stat(at, before) for _, c in cols], at + 1, who)
            self._n = self._n + at + 1 if before < 0 else at - before
            return alarms, at + 1
        self._settle([c.stat(ln - 1, r) for _, c in cols], ln, None)
        self._n = self._n + ln if r < 0 else ln - 1 - r
        return alarms, ln

    def _vars(self) -> dict[str, Any]:
        return {"s_up": self._s_up, "s_down": self._s_down, "n": self._n, "alarm": self._alarm,
                "side": self._side}

    def _load(self, state: dict[str, Any]) -> None:
        self._s_up = int(state["s_up"])
        self._s_down = int(state["s_down"])
        self._n = int(state["n"])
        self._alarm = bool(state["alarm"])
        self._side = state["side"]


def _check_direction(direction: str) -> tuple[bool, bool]:
    if direction not in ("up", "down", "both"):
        raise ValueError(f"direction must be 'up', 'down' or 'both', got {direction!r}")
    return direction != "down", direction != "up"


def _check_warmup(warmup: int, least: int) -> int:
    if isinstance(warmup, bool) or not isinstance(warmup, int | np.integer) or warmup < least:
        raise ValueError(f"warmup must be an integer >= {least}, got {warmup!r}")
    return int(warmup)


class GaussianCUSUM(_Cusum):
    """CUSUM for a shift of ``delta`` standard deviations in the mean of a Gaussian stream.

    The increments are the log-likelihood ratios ``delta * u - delta**2 / 2`` (up) and ``-delta * u -
    delta**2 / 2`` (down), with ``u = (x - mu) / sigma``; the statistic is in nats.

    Parameters
    ----------
    delta:
        The shift to detect, in units of sigma (the CUSUM is optimal for a shift of exactly that size and
        still detects others).
    direction:
        ``"up"``, ``"down"`` or ``"both"`` (two one-sided CUSUMs; an alarm from either).
    mu, sigma:
        The in-control mean and standard deviation. Either left ``None`` is estimated at every (re)start from
        the next ``warmup`` observations, robustly: the median, and 1.4826 times the median absolute
        deviation (the standard deviation if that is 0; a constant warm-up makes any different value alarm).
    warmup:
        Warm-up length (used only when ``mu`` or ``sigma`` is estimated). No alarm is possible during it.
        The default of 200 keeps 9 segments in 10 at an ARL of at least ``arl / 2`` (see below).
    arl:
        Average run length to a false alarm on an in-control stream that the threshold is set for.

    Guarantee and threshold. With ``mu`` and ``sigma`` given, the average run length to a false alarm of an
    in-control Gaussian stream is at least ``arl``: the threshold is the root of the exact ARL (the CUSUM's
    integral equation, see :func:`gaussian_arl`), ``2 * arl`` per side when two-sided. That is sharper than
    Lorden's ``log(arl)`` (7.36 nats against 9.21 at ``arl=10_000``, ``delta=1``: about 4 observations less
    delay for a 1-sigma shift), and safe where Siegmund's approximation is not.

    With estimated parameters the guarantee is weaker, and it is stated over warm-ups. The estimates' errors
    stay for the whole segment (up to the next alarm): given them, the segment is a CUSUM whose increments
    have the wrong mean and scale, with its own ARL, the *conditional* ARL. It is below ``arl`` when sigma
    comes out low or the mean misplaced (always one side of a two-sided detector), far above it when sigma
    comes out high. The statistic uses the estimates as if they were exact, and the threshold is raised
    above the known-parameter one until, over in-control Gaussian warm-ups:

    (i) at least 90 % of the warm-ups give a conditional ARL of at least ``arl / 2`` (its 10th percentile);
    (ii) at least half give one of at least ``arl`` (its median);
    (iii) the mean run length, counting any run beyond ``10 * arl`` as ``10 * arl``, is at least ``arl``.

    They are computed once per configuration from 8192 simulated Gaussian warm-ups (fixed seed, this
    estimator: so the 90 % is itself known to about 0.3 %, one standard error), with Siegmund's approximation
    scaled to the exact ARL (within 1.3 % of the integral equation on the lower half of the conditional
    ARLs). (i) is the one that binds at the default warm-up of
    200: at ``arl=10_000``, ``delta=1``, two-sided, ``h`` = 10.20 nats (8.06 with known parameters); over
    2000 fresh warm-ups the conditional ARL's 1st, 5th, 10th percentiles and median were 1330, 3120, 5400
    and 35,500 (9.5 % below 5000, 0.6 % below 1000), and the delay to a 1-sigma shift a median of 19 (a
    mean of 20.7). One-sided: ``h`` = 9.23 (7.36 known), 10th percentile 5440. The price is the warm-up:
    no alarm is possible during it, after every restart. A shorter one needs a much higher threshold for
    the same guarantee (two-sided: 12.57 at 100, 31.9 at 30; the constructor refuses one above 4096
    nats, e.g. ``delta=0.5`` with a 30-observation warm-up at ``arl=1e6``); a longer one, a lower
    threshold (8.77 at 500). For the guarantee of the known-parameter case, give ``mu`` and ``sigma``.
    Gaussian data only.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> x = np.concatenate([rng.normal(5.0, 2.0, 500), rng.normal(7.0, 2.0, 100)])  # +1 sigma at 500
    >>> det = GaussianCUSUM(delta=1.0, direction="up", mu=5.0, sigma=2.0)
    >>> det.update_many(x)  # the first alarm 19 observations in; then it restarts, and alarms again
    array([518, 527, 539, 549, 561, 571])
    >>> round(det.threshold, 3), det.alarm, det.n  # 28 observations since the last restart
    (7.361, False, 28)
    """

    name: ClassVar[str] = "gaussian_cusum"
    kind: ClassVar[str] = "real"

    def __init__(self, delta: float = 1.0, direction: Direction = "both", mu: float | None = None,
                 sigma: float | None = None, warmup: int = 200, arl: float = 10_000.0) -> None:
        super().__init__(arl)
        self._delta = check_positive("delta", delta)
        self._up, self._down = _check_direction(direction)
        self._direction = direction
        self._mu0 = None if mu is None else check_finite("mu", mu)
        self._sigma0 = None if sigma is None else check_positive("sigma", sigma)
        self._warmup = _check_warmup(warmup, 2)
        if self._delta > 64.0:
            raise ValueError(f"delta must be at most 64 (sigma), got {delta!r}")
        self._cu = math.ceil(self._delta * self._delta / 2.0 * SCALE)
        self._cd = self._cu + 1
        est_mu, est_sigma = mu is None, sigma is None
        self._h = _gaussian_threshold_est(self._arl, self._delta, self._up, self._down, self._warmup, est_mu,
                                          est_sigma)
        if self._h > _H_MAX:
            raise ValueError(f"arl={arl!r} needs a threshold above {_H_MAX} nats")
        self.reset()

    def _restart(self) -> None:
        super()._restart()
        self._buf: list[float] = []
        self._mu_hat: float | None = None
        self._sigma_hat: float | None = None
        self._set_coefficients()

    def _set_coefficients(self) -> None:
        mu = self._mu0 if self._mu0 is not None else self._mu_hat
        sigma = self._sigma0 if self._sigma0 is not None else self._sigma_hat
        self._live = mu is not None and sigma is not None
        if mu is not None and sigma is not None:
            self._m = mu
            self._a = self._delta / sigma * SCALE

    def _ready(self) -> bool:
        return self._live

    def _warm(self, x: F64) -> int:
        take = x[: self._warmup - len(self._buf)]
        self._buf.extend(take.tolist())
        if len(self._buf) == self._warmup:
            med, scale = _robust_rows(np.asarray(self._buf)[None, :])
            self._mu_hat = float(med[0]) if self._mu0 is None else None
            self._sigma_hat = float(scale[0]) if self._sigma0 is None else None
            self._set_coefficients()
        return int(take.size)

    def _invariant(self) -> bool:
        return self._mu0 is not None and self._sigma0 is not None

    def _fill(self, x: F64, t: F64) -> None:
        np.subtract(x, self._m, out=t)
        np.multiply(t, self._a, out=t)

    def _q_one(self, x: float) -> int:
        return _q1((x - self._m) * self._a)

    # -- read-only --------------------------------------------------------------------------------------------
    @property
    def delta(self) -> float:
        return self._delta

    @property
    def mu(self) -> float | None:
        """The in-control mean in use (given, or this segment's estimate; None during a warm-up)."""
        return self._m if self._live else None

    @property
    def sigma(self) -> float | None:
        """The in-control standard deviation in use (None during a warm-up)."""
        return self._delta / self._a * SCALE if self._live else None

    def params(self) -> dict[str, Any]:
        return {"delta": self._delta, "direction": self._direction, "mu": self._mu0, "sigma": self._sigma0,
                "warmup": self._warmup, "arl": self._arl}

    def _vars(self) -> dict[str, Any]:
        return {**super()._vars(), "buffer": list(self._buf), "mu_hat": self._mu_hat, "sigma_hat": self._sigma_hat}

    def _load(self, state: dict[str, Any]) -> None:
        super()._load(state)
        self._buf = [float(v) for v in state["buffer"]]
        self._mu_hat = None if state["mu_hat"] is None else float(state["mu_hat"])
        self._sigma_hat = None if state["sigma_hat"] is None else float(state["sigma_hat"])
        self._set_coefficients()

    def first_alarms(self, streams: ArrayLike) -> NDArray[np.intp]:
        """For each row of a 2-D array, where a fresh detector with these parameters first alarms (-1: never).

        Vectorized across rows (for calibration by simulation); the detector's own state is untouched. The
        result equals ``update_many`` on each row, warm-up included.
        """
        x = np.array(streams, dtype=np.float64, ndmin=2)
        rows, cols = x.shape
        w = self._warmup if (self._mu0 is None or self._sigma0 is None) else 0
        if cols <= w:
            return np.full(rows, -1, dtype=np.intp)
        mu = np.full(rows, 0.0 if self._mu0 is None else self._mu0)
        sigma = np.full(rows, 1.0 if self._sigma0 is None else self._sigma0)
        if w:
            med, scale = _robust_rows(np.ascontiguousarray(x[:, :w]))
            mu = med if self._mu0 is None else mu
            sigma = scale if self._sigma0 is None else sigma
        a = (self._delta / sigma * SCALE)[:, None]
        q = np.empty((rows, cols - w), dtype=np.int64)
        _quantize((x[:, w:] - mu[:, None]) * a, q)
        return self._first_alarm_rows(q, w)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"warmup": 10, "arl": 100.0}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"arl": 1.0}, "arl"), ({"arl": -5.0}, "arl"), ({"delta": 0.0}, "delta"),
                ({"delta": float("nan")}, "delta"), ({"delta": 100.0}, "delta"),
                ({"direction": "sideways"}, "direction"), ({"mu": float("inf")}, "mu"), ({"sigma": 0.0}, "sigma"),
                ({"warmup": 1}, "warmup"), ({"warmup": 3.0}, "warmup")]


class BernoulliCUSUM(_Cusum):
    """CUSUM for a change of the rate of a 0/1 stream from ``p0`` to ``p1 = p0 * ratio``.

    The increments are the log-likelihood ratios ``log(p1/p0)`` for a 1 and ``log((1-p1)/(1-p0))`` for a 0;
    the statistic is in nats. ``ratio > 1`` watches for an increase, ``ratio < 1`` for a decrease. When
    ``p0 * ratio`` would come too close to 1 (``p0 > 1 / (ratio + 1)``) the non-event rate is divided by
    ``ratio`` instead: ``p1 = min(ratio * p0, 1 - (1 - p0) / ratio)``.

    Parameters
    ----------
    p0:
        The in-control rate; ``None`` estimates it at every (re)start from the next ``warmup``
        observations: ``k / warmup`` for ``k`` events, but at least half an event (``0.5 / warmup``) when
        watching for an increase, at most ``warmup - 0.5`` events when watching for a decrease. (A warm-up
        of all ones leaves no room for an increase: the detector then stays silent until reset.)
    ratio:
        The rate ratio to detect (not 1).
    warmup:
        Warm-up length when ``p0`` is estimated.
    arl:
        Average run length to a false alarm on an in-control stream that the threshold is set for.

    Guarantee and threshold. With ``p0`` given, the ARL to a false alarm on an in-control stream is at least
    ``arl``, rigorously: the threshold is the smallest whose lattice lower bound on the ARL reaches ``arl``
    (see :func:`bernoulli_threshold`); it is lower than Lorden's ``log(arl)`` (6.45 against 9.21 nats for
    0.2 -> 0.4 at ``arl=10_000``), which it falls back to for rates below about 1e-4.

    With ``p0`` estimated it is approximate: the threshold is the one for the estimate, as if it were the
    truth (computed at the end of each warm-up, cached per event count). An underestimated rate shortens
    the runs and an overestimated one lengthens them more, so the mean run length stays above ``arl``
    (checked by simulation at 0.05 and 0.2), but the runs are more spread out than with a known rate: at
    ``arl=10_000``, p0 = 0.1 and the default 100-observation warm-up, a tenth of the runs end within about
    300 observations (1053 for a geometric law with mean 10,000). A longer warm-up narrows that.

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> x = np.concatenate([rng.random(2000) < 0.1, rng.random(500) < 0.2]).astype(float)  # doubles at 2000
    >>> det = BernoulliCUSUM(p0=0.1, ratio=2.0)
    >>> det.update_many(x)
    array([2110, 2188, 2265, 2342, 2378])
    >>> round(det.threshold, 2)
    5.64
    """

    name: ClassVar[str] = "bernoulli_cusum"
    kind: ClassVar[str] = "binary"

    def __init__(self, p0: float | None = None, ratio: float = 2.0, warmup: int = 100,
                 arl: float = 10_000.0) -> None:
        super().__init__(arl)
        r = check_positive("ratio", ratio)
        if r == 1.0:
            raise ValueError("ratio must differ from 1")
        self._ratio = r
        self._p00 = None if p0 is None else check_probability("p0", p0)
        self._warmup = _check_warmup(warmup, 1)
        self.reset()

    def _p1(self, p0: float) -> float:
        if self._ratio < 1.0:
            return self._ratio * p0
        return min(self._ratio * p0, 1.0 - (1.0 - p0) / self._ratio)

    def _restart(self) -> None:
        super()._restart()
        self._k = 0
        self._seen = 0
        self._p0_hat: float | None = None
        self._set_rate(self._p00)

    def _set_rate(self, p0: float | None) -> None:
        self._p0 = p0
        if p0 is None:
            self._h = math.inf
            return
        p1 = self._p1(p0)
        if p1 == p0 or p0 <= 0.0 or p0 >= 1.0:  # no change of this kind is possible from p0: stay silent
            self._z_event = self._z_none = 0
            self._h = math.log(self._arl)
            return
        u1, u0 = _bernoulli_steps(p0, p1)
        self._z_event, self._z_none = _q1(u1 * SCALE), _q1(u0 * SCALE)
        self._h = bernoulli_threshold(p0, p1, self._arl)

    def _estimate(self, k: int) -> float:
        w = self._warmup
        return max(k, 0.5) / w if self._ratio > 1.0 else min(k, w - 0.5) / w

    def _ready(self) -> bool:
        return self._p0 is not None

    def _warm(self, x: F64) -> int:
        take = x[: self._warmup - self._seen]
        _binary(take)
        self._k += int(np.count_nonzero(take))
        self._seen += take.size
        if self._seen == self._warmup:
            self._p0_hat = self._estimate(self._k)
            self._set_rate(self._p0_hat)
        return int(take.size)

    def _invariant(self) -> bool:
        return self._p00 is not None

    def _fill(self, x: F64, t: F64) -> None:
        _binary(x)
        np.multiply(x, float(self._z_event - self._z_none), out=t)  # exact: integers below 2**53
        np.add(t, float(self._z_none), out=t)

    def _q_one(self, x: float) -> int:
        if x != 0.0 and x != 1.0:
            raise ValueError(f"observations must be 0 or 1, got {x!r}")
        return self._z_event if x == 1.0 else self._z_none

    @property
    def threshold(self) -> float:
        """The alarm threshold (nats) of this segment; ``inf`` while the warm-up estimates ``p0``."""
        return self._h

    @property
    def p0(self) -> float | None:
        """The in-control rate in use (given, or this segment's estimate; None during a warm-up)."""
        return self._p0

    @property
    def p1(self) -> float | None:
        return None if self._p0 is None else self._p1(self._p0)

    def params(self) -> dict[str, Any]:
        return {"p0": self._p00, "ratio": self._ratio, "warmup": self._warmup, "arl": self._arl}

    def _vars(self) -> dict[str, Any]:
        return {**super()._vars(), "k": self._k, "seen": self._seen, "p0_hat": self._p0_hat}

    def _load(self, state: dict[str, Any]) -> None:
        super()._load(state)
        self._k = int(state["k"])
        self._seen = int(state["seen"])
        self._p0_hat = None if state["p0_hat"] is None else float(state["p0_hat"])
        self._set_rate(self._p00 if self._p00 is not None else self._p0_hat)

    def first_alarms(self, streams: ArrayLike) -> NDArray[np.intp]:
        """For each row of a 2-D 0/1 array, where a fresh detector with these parameters first alarms (-1: never).

        Vectorized across rows; the detector's own state is untouched; equals ``update_many`` on each row.
        """
        x = np.array(streams, dtype=np.float64, ndmin=2)
        _binary(x)
        rows, cols = x.shape
        w = self._warmup if self._p00 is None else 0
        if cols <= w:
            return np.full(rows, -1, dtype=np.intp)
        ks = np.count_nonzero(x[:, :w], axis=1) if w else np.zeros(rows, dtype=np.int64)
        ze = np.empty(rows, dtype=np.int64)
        zn = np.empty(rows, dtype=np.int64)
        hs = np.empty(rows, dtype=np.int64)
        probe = BernoulliCUSUM(p0=self._p00, ratio=self._ratio, warmup=self._warmup, arl=self._arl)
        for k in np.unique(ks):
            probe._set_rate(self._p00 if self._p00 is not None else self._estimate(int(k)))
            sel = ks == k
            ze[sel], zn[sel], hs[sel] = probe._z_event, probe._z_none, probe._h_int()
        z = np.empty((rows, cols - w + 1), dtype=np.int64)
        z[:, 1:] = x[:, w:]
        z[:, 1:] *= (ze - zn)[:, None]
        z[:, 1:] += zn[:, None]
        first = _first_rows(z, hs[:, None])
        return np.where(first >= 0, first + w, -1).astype(np.intp)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"warmup": 20, "arl": 1000.0}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"arl": 1.0}, "arl"), ({"arl": float("inf")}, "arl"), ({"ratio": 1.0}, "ratio"),
                ({"ratio": -2.0}, "ratio"), ({"p0": 1.5}, "p0"), ({"p0": 0.0}, "p0"), ({"warmup": 0}, "warmup"),
                ({"warmup": 2.5}, "warmup")]


def _binary(x: F64) -> None:
    if x.size and not np.all((x == 0.0) | (x == 1.0)):
        raise ValueError("observations must be 0 or 1")
