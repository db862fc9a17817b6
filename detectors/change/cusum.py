"""Page's CUSUM of log-likelihood ratios: :class:`CUSUMDetector`, the base class of the CUSUM detectors.

A detector runs one or two one-sided Lindley recursions ``S_t = max(0, S_{t-1} + z_t)`` on log-likelihood-ratio
increments ``z_t = log f1(x_t) / f0(x_t)`` and alarms when ``S_t >= h``, ``h`` set from the target ``arl``
(:mod:`detectors.change.arl`). The statistic is in fixed point, which makes ``update_many`` and repeated
``update`` agree bit for bit (:mod:`detectors.change.lindley`). Here: the base class, with the warm-up after each
(re)start and the block loop of ``update_many`` (flat prefix sums, the column layout for long blocks, one
observation at a time while alarms come in quick succession). The detectors on it:
:class:`~detectors.change.cusum_gaussian.GaussianCUSUM`, :class:`~detectors.change.cusum_bernoulli.BernoulliCUSUM` and
:class:`~detectors.change.page_hinkley.PageHinkley`.

The names this module held before the split stay importable from it: the threshold functions, re-exported
from :mod:`detectors.change.arl`, and the two detectors (imported on first use: their modules import this one).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.base import ChangeDetector, check_positive
from detectors.change.arl import bernoulli_threshold, gaussian_arl, gaussian_threshold, siegmund_arl
from detectors.change.lindley import (
    F64,
    I64,
    ROWS,
    SCALE,
    Columns,
    check_all_finite,
    first_at_least,
    first_rows,
    floor_clip,
    lindley,
    row_offsets,
    split,
    to_columns,
)

__all__ = ["CUSUMDetector", "Direction", "bernoulli_threshold", "check_sides", "check_warmup", "gaussian_arl",
           "gaussian_threshold", "siegmund_arl"]

Direction = Literal["up", "down", "both"]

_BLOCK = 1 << 16  # observations per vectorized block: int64 sums stay below 2**63 (2**18 * 2**44 = 2**62)
# smallest block: after an alarm the next segment's blocks start at about a quarter of the last segment's length
# (small after a short one: alarms cluster after a change), and double up to _BLOCK
_FIRST_BLOCK = 256
_DENSE_GAP = 64  # two alarms in a row closer than this switch update_many to one observation at a time ...
_QUIET = 512  # ... until this many pass without one
_DENSE_CHUNK = 4096
_COLUMN_MIN = 8192  # blocks at least this long use the column layout


class CUSUMDetector(ChangeDetector):
    """A change detector made of one or two one-sided CUSUMs in fixed point, with a warm-up after each
    (re)start and the block loop of ``update_many``; the base of every CUSUM detector of this package.

    Subclasses fill in the increments: they set the watched sides (``_up``, ``_down``), the threshold ``_h``
    (nats) and the offsets ``_cu``, ``_cd``, and implement :meth:`_fill` (the terms of a block) and
    :meth:`_q_one` (the quantized term of one observation). A subclass that estimates parameters after each
    (re)start also overrides :meth:`_ready`, :meth:`_warm` and :meth:`_restart`; one whose terms depend on
    the observations before (a running mean) sets ``_elementwise = False`` and overrides :meth:`_advance`.
    """

    _up: bool = True
    _down: bool = False
    _h: float = math.inf
    #: The increments are ``q - _cu`` (up) and ``-q - _cd`` (down) with ``q = floor(clip(t))`` and ``t`` the
    #: term :meth:`_fill` computes, in units of 2**-30 nats (see :func:`~detectors.change.lindley.split`).
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
        """``q`` for one observation, as :meth:`_fill` and ``quantize`` give it."""
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
                f = first_rows(z, h)
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
            check_all_finite(x)
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
                        check_all_finite(x[i:i + k])
                    self._n += k
                    i += k
                    continue
                invariant = self._invariant()
                if invariant and self._dense:
                    chunk = x[i:i + _DENSE_CHUNK]
                    if saved is not None:
                        check_all_finite(chunk)
                    alarms, used = self._scalar_run(chunk)
                else:
                    chunk = x[i:min(n, i + (_BLOCK if invariant else self._block))]
                    if chunk.size >= _COLUMN_MIN:
                        alarms, used = self._columns(chunk, invariant, work)
                    else:
                        if saved is not None:
                            check_all_finite(chunk)
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
        split(t, None if z[0] is None else z[0][1:], None if z[1] is None else z[1][1:], self._cu, self._cd)
        h = self._h_int()
        sides = [(name, zz, s0) for name, zz, s0 in (("up", z[0], self._s_up), ("down", z[1], self._s_down))
                 if zz is not None]
        scratch = np.empty(ln + 1, dtype=np.int64)
        stats, firsts = [], []
        for _name, zz, s0 in sides:
            lindley(zz, s0, scratch)
            stats.append(zz[1:])
            firsts.append(first_at_least(zz[1:], h))
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
        split(t, z[0] if self._up else None, z[1] if self._down else None, self._cu, self._cd)
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
        b = ROWS
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
        cols: list[tuple[str, Columns]] = []
        for clip in (False, True):  # clipping is rarely needed: the first pass shows whether it was
            # (the first pass is quiet: a value that overflows, or is not finite, makes it fail its check)
            with np.errstate(invalid="ignore", over="ignore") if not clip else np.errstate():
                if self._elementwise:  # transpose the observations once; the terms follow in layout order
                    if pad:
                        q[b - pad:, -1] = 0.0
                    to_columns(x, q)
                    flat = q.reshape(-1)
                    self._fill(flat, flat)
                else:  # natural order in, column layout out
                    flat = np.empty(ln)
                    self._fill(x, flat)
                if clip:
                    floor_clip(flat)
                else:
                    np.floor(flat, out=flat)
                if not self._elementwise:
                    to_columns(flat, q)
                if pad:
                    q[b - pad:, -1] = 0.0  # past the block's end: increments -cu and -cd, which never alarm
                if self._up:
                    np.subtract(q, float(self._cu), out=q)
                else:
                    np.subtract(-float(self._cd), q, out=q)
                for prev, cur in zip(rows, rows[1:], strict=False):
                    np.add(cur, prev, out=cur)
                first = Columns(q, rows, self._s_up if self._up else self._s_down, h, scratch, srows, not clip)
            if first.ok:
                break
            check_all_finite(x)  # (a value that is not finite fails the first pass's check too)
        cols.append(("up" if self._up else "down", first))
        if self._up and self._down:  # the down side's column sums from the up side's, row by row
            pd, drows = buf("down")
            for off, src, dst in zip(row_offsets(self._cu + self._cd, b), rows, drows, strict=True):
                np.subtract(off, src, out=dst)
            cols.append(("down", Columns(pd, drows, self._s_down, h, scratch, srows)))
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


def check_sides(direction: str) -> tuple[bool, bool]:
    if direction not in ("up", "down", "both"):
        raise ValueError(f"direction must be 'up', 'down' or 'both', got {direction!r}")
    return direction != "down", direction != "up"


def check_warmup(warmup: int, least: int) -> int:
    if isinstance(warmup, bool) or not isinstance(warmup, int | np.integer) or warmup < least:
        raise ValueError(f"warmup must be an integer >= {least}, got {warmup!r}")
    return int(warmup)


def __getattr__(name: str) -> Any:
    """``GaussianCUSUM`` and ``BernoulliCUSUM``, which lived in this module: imported on first use."""
    if name == "GaussianCUSUM":
        from detectors.change.cusum_gaussian import GaussianCUSUM

        return GaussianCUSUM
    if name == "BernoulliCUSUM":
        from detectors.change.cusum_bernoulli import BernoulliCUSUM

        return BernoulliCUSUM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
