"""The fixed-point, vectorized Lindley recursion ``S_t = max(0, S_{t-1} + z_t)`` behind every CUSUM detector.

The statistic is kept in fixed point (integer multiples of ``2**-30`` nats, :data:`SCALE`; increments rounded
down, which can only delay an alarm, and clipped at +-16384 nats, which never changes one). Integer sums are
associative, so the prefix form ``S_t = C_t - min(0, min_{s<=t} C_s)`` (``C`` the running sum, via
``np.cumsum`` and ``np.minimum.accumulate``) gives *exactly* the recursion's values (:func:`lindley`,
:func:`first_rows`): a vectorized pass and one observation at a time agree bit for bit, whatever the
chunking. Long blocks sum within columns of 32 observations in float64, whose integers are exact below
2**53: see :class:`Columns`. The block loop that drives these kernels is
:class:`detectors.change.cusum.CUSUMDetector`'s ``update_many``.

>>> z = np.array([0, 3, -5, 2, 4], dtype=np.int64)  # z[0] is scratch; then the increments 3, -5, 2, 4
>>> lindley(z, 0, np.empty_like(z))
>>> z[1:].tolist()
[3, 0, 2, 6]
"""

from __future__ import annotations

import bisect
import functools
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["F64", "I64", "ROWS", "SCALE", "Columns", "check_all_finite", "first_at_least", "first_rows",
           "floor_clip", "lindley", "q1", "quantize", "row_offsets", "split", "to_columns"]

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

SCALE = 2.0**30  # fixed point: the statistic is an integer count of 2**-30 nats
_CLIP = 2.0**14 * SCALE  # increments are clipped to +-16384 nats (an alarm needs far less: detectors.change.arl.H_MAX)
ROWS = 32  # column layout: observation t of a block is row t % 32 of column t // 32
_TILE = 128  # columns per transposition tile: a cache-sized tile copies about twice as fast as one strided copy
_SAFE = 2.0**42  # column sums below this in size show that no term needed clipping (see Columns)
_EXACT = 2.0**51  # sums across columns below this in size keep every quantity exact in float64 (see Columns)


def quantize(t: F64, out: I64) -> None:
    """``floor(clip(t))`` into the int64 array ``out`` (``t`` may be overwritten; either may be a strided view)."""
    if t.size and (t.min() < -_CLIP or t.max() > _CLIP):
        np.clip(t, -_CLIP, _CLIP, out=t)
    np.floor(t, out=out, casting="unsafe")


def q1(t: float) -> int:
    """The scalar twin of :func:`quantize`."""
    return math.floor(_CLIP if t > _CLIP else (-_CLIP if t < -_CLIP else t))


def split(t: F64, zu: I64 | None, zd: I64 | None, cu: int, cd: int) -> None:
    """The increments of both one-sided CUSUMs from one quantized term ``q = floor(clip(t))``: ``q - cu`` (up)
    into ``zu`` and ``-q - cd`` (down) into ``zd`` (``t`` may be overwritten; the outputs may be strided)."""
    first = zu if zu is not None else zd
    assert first is not None
    quantize(t, first)
    if zd is not None:
        if zu is not None:
            np.negative(zu, out=zd)
        else:
            np.negative(zd, out=zd)
        zd -= cd
    if zu is not None:
        zu -= cu


def lindley(z: I64, s0: int, m: I64) -> None:
    """In place: ``z[1:]`` holds increments (``z[0]`` is scratch); afterwards ``z[1:]`` holds the statistic.

    ``S_t = D_t - min(0, min_{s<=t} D_s)`` with ``D_t = s0 + z_1 + ... + z_t``: the Lindley recursion from s0.
    """
    z[0] = 0
    z[1] += s0
    np.cumsum(z, out=z)
    np.minimum.accumulate(z, out=m)
    np.subtract(z, m, out=z)


def first_at_least(s: I64, h: int) -> int:
    if int(s.max()) < h:
        return -1
    return int(np.argmax(s >= h))


def first_rows(z: I64, h: I64 | int) -> NDArray[np.intp]:
    """Rows of ``z[:, 1:]`` hold increments of independent fresh CUSUMs: the first index at or above h, or -1."""
    z[:, 0] = 0
    np.cumsum(z, axis=1, out=z)
    z -= np.minimum.accumulate(z, axis=1)
    hit = z[:, 1:] >= h
    first = np.argmax(hit, axis=1)
    first[~hit[np.arange(z.shape[0]), first]] = -1
    return np.asarray(first, dtype=np.intp)


def floor_clip(t: F64) -> None:
    """In place: ``floor(clip(t))``, the float twin of :func:`quantize` (integers below 2**44: exact)."""
    if t.size and (t.min() < -_CLIP or t.max() > _CLIP):
        np.clip(t, -_CLIP, _CLIP, out=t)
    np.floor(t, out=t)


@functools.lru_cache(maxsize=64)
def row_offsets(c: int, b: int) -> tuple[F64, ...]:
    """``-(i + 1) * c`` for the rows ``i < b``, as 0-d arrays (a ufunc takes them faster than Python floats)."""
    return tuple(np.array(-(i + 1) * float(c)) for i in range(b))


def to_columns(src: F64, out: F64) -> None:
    """``out[i, j] = src[j * b + i]`` for ``out`` of shape (b, nb) (the cells past ``src`` are left alone)."""
    b = out.shape[0]
    full = src.size // b
    cols = src[:full * b].reshape(full, b)
    for j in range(0, full, _TILE):
        e = min(j + _TILE, full)
        np.copyto(out[:, j:e], cols[j:e].T)
    if full * b < src.size:
        out[:src.size - full * b, full] = src[full * b:]


class Columns:
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


def check_all_finite(x: F64) -> None:
    with np.errstate(invalid="ignore", over="ignore"):  # (inf - inf, or a sum past 1e308: then look closer)
        total = float(np.add.reduce(x))
    if x.size and not math.isfinite(total) and not np.all(np.isfinite(x)):
        raise ValueError("observations must be finite numbers")
