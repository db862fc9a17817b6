"""Label-only blocks: the machinery every two-sample test of this package runs on.

Consecutive observations are grouped into *blocks* by a rule that looks only at the labels (canary or
baseline), never at the outcomes: with ``C`` and ``S`` the canary and baseline observations since the last
reset, a block closes at the observation where ``min(C // block, S // block)`` goes up (a version, on whole
arrays, of "close once the block holds ``block`` of each"): a block holds about ``block`` observations of the
rarer arm and every observation of the other arm that came in between. If within a block canary and
baseline observations are exchangeable (the null hypothesis), anything computed from a closed block's
canary outcomes given its margins has a known law, whatever the outcomes' law is at that time: so rates
that move over time, and a canary share that moves over time, hit both arms of a block alike and do not
break a test built on it.

Here: the block rule (:func:`assign_blocks`, :class:`Blocks`) and the per block and arm sums
(:func:`block_sums`); :class:`BlockedTwoSampleTest`, the base of the Bernoulli, Poisson, quantile-exceedance
and categorical tests, which runs a mixture of per-block likelihood ratios on whole arrays (one stream, or
many simulated ones at once); and the Fisher increments of blocks' 2x2 tables (:func:`fisher_tables`,
:func:`fisher_increments`). The tests of one rate (Bernoulli, Poisson) share a further base,
:class:`detectors.rate.RateTwoSampleTest`.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.base import TwoSampleTest, check_probability
from detectors.mixture_fisher import fisher_log_lr

__all__ = ["BlockedTwoSampleTest", "Blocks", "Direction", "Floats", "Ints", "State", "assign_blocks", "block_sums",
           "check_block", "check_direction", "fisher_increments", "fisher_tables", "logsumexp"]

Direction = Literal["increase", "decrease"]
State = dict[str, Any]
Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


# -- blocks ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Blocks:
    """How the observations of ``S`` streams (rows) fall into blocks.

    ``rel[s, t]`` is the block of observation ``t`` counted from the block that was open before these
    observations (0); ``closes[s, t]`` whether it closes its block; ``n_closed[s]`` how many blocks closed;
    ``width`` the number of block slots, ``max(n_closed) + 1`` (the last is the new open block).
    """

    rel: Ints
    closes: NDArray[np.bool_]
    n_closed: Ints
    n_canary: Ints
    n_baseline: Ints
    width: int

    @property
    def closed(self) -> NDArray[np.bool_]:
        """``(S, width)``: which block slots closed."""
        return np.arange(self.width)[None, :] < self.n_closed[:, None]

    def close_positions(self) -> Ints:
        """``(S, width)``: the observation that closed each slot (-1 for a slot left open)."""
        pos = np.full((self.rel.shape[0], self.width), -1, dtype=np.int64)
        s, t = np.nonzero(self.closes)
        pos[s, self.rel[s, t]] = t
        return pos


def assign_blocks(is_canary: NDArray[np.bool_], n_canary: Ints, n_baseline: Ints, block: int) -> Blocks:
    """Blocks of ``(S, n)`` labelled observations, given the label counts ``(S,)`` since the last reset.

    A block closes at the observation where ``min(C // block, S // block)`` increases, ``C`` and ``S`` the
    cumulative canary and baseline counts: the rule reads labels only, and runs on whole arrays.

    >>> b = assign_blocks(np.array([[1, 0, 0, 1, 0, 1]], dtype=bool), np.zeros(1, np.int64),
    ...                   np.zeros(1, np.int64), 1)
    >>> b.rel.tolist(), b.n_closed.tolist()
    ([[0, 0, 1, 1, 2, 2]], [3])
    """
    lab = is_canary.astype(np.int64)
    n_rows, n = lab.shape
    level0 = np.minimum(n_canary // block, n_baseline // block)
    if n == 0:
        return Blocks(np.zeros((n_rows, 0), np.int64), np.zeros((n_rows, 0), bool), np.zeros(n_rows, np.int64),
                      n_canary.copy(), n_baseline.copy(), 1)
    c = n_canary[:, None] + np.cumsum(lab, axis=1)
    s = n_baseline[:, None] + np.cumsum(1 - lab, axis=1)
    level = np.minimum(c // block, s // block)
    before = np.concatenate([level0[:, None], level[:, :-1]], axis=1)
    n_closed = level[:, -1] - level0
    return Blocks(before - level0[:, None], level > before, n_closed, c[:, -1], s[:, -1],
                  int(n_closed.max()) + 1)


def block_sums(blocks: Blocks, is_canary: NDArray[np.bool_], feats: Floats, pending: Floats) -> tuple[Floats, Floats]:
    """Per block and arm sums of ``(S, n, d)`` features, the open block's ``pending`` ``(S, 2, d)`` added.

    Returns ``(sums, new_pending)``: ``sums`` of shape ``(S, width, 2, d)`` (arm 0 baseline, 1 canary) and
    the sums of the block left open.
    """
    n_rows, n, d = feats.shape
    r = blocks.width
    idx = ((np.arange(n_rows)[:, None] * r + blocks.rel) * 2 + is_canary).ravel()
    sums = np.empty((n_rows * r * 2, d))
    for j in range(d):
        sums[:, j] = np.bincount(idx, weights=feats[:, :, j].ravel(), minlength=n_rows * r * 2)
    out = sums.reshape(n_rows, r, 2, d)
    out[:, 0] += pending
    return out, out[np.arange(n_rows), blocks.n_closed].copy()


def logsumexp(a: Floats, axis: int) -> Floats:
    """``log(sum(exp(a)))`` along ``axis`` (scipy's costs ~10x more per call at the sizes of one update)."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out: Floats = np.log(np.sum(np.exp(a - m), axis=axis)) + np.squeeze(m, axis=axis)
    return out


def check_block(block: int) -> int:
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
        raise ValueError(f"block must be an integer >= 1, got {block!r}")
    return int(block)


def check_direction(direction: str) -> Direction:
    if direction not in ("increase", "decrease"):
        raise ValueError(f"direction must be 'increase' or 'decrease', got {direction!r}")
    return direction  # type: ignore[return-value]


# -- the shared detector ---------------------------------------------------------------------------------
class BlockedTwoSampleTest(TwoSampleTest):
    """A mixture of likelihood ratios over label-only blocks, run on whole arrays.

    The running variables live in a dict of arrays whose first axis is the stream, so that the same code
    steps one detector (``update_many``: one row) or many independent copies (:meth:`run_streams`: one
    row per simulated stream). Subclasses supply :meth:`_fresh` (extra variables), :meth:`_check_values`
    and :meth:`_increments` (per closed block log likelihood ratios on the mixture's components).
    """

    #: observations per vectorized step; bounds the memory of one step
    _chunk: ClassVar[int] = 2048
    #: streams per vectorized step of :meth:`run_streams`
    _rows: ClassVar[int] = 256
    #: variables shared by every stream (not stacked along the stream axis)
    _shared: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, alpha: float, block: int) -> None:
        self._alpha = check_probability("alpha", alpha)
        self._block = check_block(block)
        self._st: State = {}

    # -- the contract ------------------------------------------------------------------------------------
    @property
    def alpha(self) -> float:
        return self._alpha

    @property
    def block(self) -> int:
        return self._block

    @property
    def statistic(self) -> float:
        return float(self._st["stat"][0])

    @property
    def alarm(self) -> bool:
        return bool(self._st["max_stat"][0] >= self.threshold)

    @property
    def p_value(self) -> float:
        return float(min(1.0, math.exp(-float(self._st["max_stat"][0]))))

    @property
    def counts(self) -> tuple[int, int]:
        """``(canary, baseline)`` observations since the last reset."""
        return int(self._st["n_canary"][0]), int(self._st["n_baseline"][0])

    def reset(self) -> None:
        self._st = self._new_state(1)

    def update_many(self, xs: ArrayLike, is_canary: ArrayLike) -> bool:
        x = np.asarray(xs, dtype=np.float64).ravel()
        lab = np.asarray(is_canary).ravel()
        if x.shape != lab.shape:
            raise ValueError(f"xs and is_canary must have the same length, got {x.size} and {lab.size}")
        self._check_values(x)
        lab = lab.astype(bool)
        for start in range(0, x.size, self._chunk):
            self._advance(self._st, x[None, start:start + self._chunk], lab[None, start:start + self._chunk])
        return self.alarm

    def run_streams(self, xs: ArrayLike, is_canary: ArrayLike) -> tuple[Ints, Floats]:
        """Run independent copies of this detector, from its current state, over each row of ``(S, n)`` arrays.

        Returns ``(first_alarm, max_statistic)``: per row the index of the observation at which the alarm
        was raised (-1 if it was not) and the largest statistic seen. The detector itself is unchanged.
        This is the fast path for simulations: every step is vectorized over rows and observations.
        """
        x = np.asarray(xs, dtype=np.float64)
        lab = np.asarray(is_canary)
        if x.ndim != 2 or x.shape != lab.shape:
            raise ValueError("xs and is_canary must be 2-D arrays of the same shape")
        self._check_values(x)
        lab = lab.astype(bool)
        n_rows, n = x.shape
        first = np.full(n_rows, -1, dtype=np.int64)
        top = np.empty(n_rows)
        for i in range(0, n_rows, self._rows):
            j = min(n_rows, i + self._rows)
            st = self._broadcast(j - i)
            was = st["max_stat"] >= self.threshold
            f = np.where(was, 0, -1)
            for start in range(0, n, self._chunk):
                hit = self._advance(st, x[i:j, start:start + self._chunk], lab[i:j, start:start + self._chunk])
                f = np.where((f < 0) & (hit >= 0), hit + start, f)
            first[i:j] = f
            top[i:j] = st["max_stat"]
        return first, top

    # -- the engine --------------------------------------------------------------------------------------
    def _new_state(self, n_rows: int) -> State:
        st: State = {"n_canary": np.zeros(n_rows, np.int64), "n_baseline": np.zeros(n_rows, np.int64),
                     "max_stat": np.zeros(n_rows), "stat": np.zeros(n_rows)}
        st.update(self._fresh(n_rows))
        return st

    def _broadcast(self, n_rows: int) -> State:
        out: State = {}
        for key, v in self._st.items():
            if key in self._shared:
                out[key] = v.copy()
            elif isinstance(v, np.ndarray):
                out[key] = np.repeat(v, n_rows, axis=0)
            else:  # a list with one entry per stream of objects that have a JSON state
                out[key] = [type(v[0]).from_state(v[0].to_state()) for _ in range(n_rows)]
        return out

    def _advance(self, st: State, x: Floats, lab: NDArray[np.bool_]) -> Ints:
        """Step ``st`` over ``(S, n)`` observations; return per row the first observation raising the alarm."""
        blocks = assign_blocks(lab, st["n_canary"], st["n_baseline"], self._block)
        log_lr0, log_w, where, inc = self._increments(st, x, lab, blocks)
        st["n_canary"], st["n_baseline"] = blocks.n_canary, blocks.n_baseline
        first = np.full(x.shape[0], -1, dtype=np.int64)
        n_rows, groups, g = log_lr0.shape
        flat = log_lr0.reshape(n_rows * groups, g)
        if where.size == 0:  # no block closed, or none told anything: the statistic has not moved
            st["log_lr"] = log_lr0.reshape(n_rows, groups * g)
            return first
        r = blocks.width
        row, rest = np.divmod(where, r * groups)
        slot, grp = np.divmod(rest, groups)
        grp += row * groups
        # each group's log likelihood ratios after every block that moved it: a cumulative sum per group
        order = np.lexsort((slot, grp))
        row, slot, grp = row[order], slot[order], grp[order]
        total = np.cumsum(inc[order], axis=0)
        start = np.flatnonzero(np.r_[True, grp[1:] != grp[:-1]])
        offset = np.where(start[:, None] > 0, total[np.maximum(start - 1, 0)], 0.0)
        lr = flat[grp] + total - offset[np.cumsum(np.r_[True, grp[1:] != grp[:-1]]) - 1]
        # each group's log mixture over its alternatives, carried forward between the blocks that moved it
        value = np.zeros((n_rows, r, groups))
        value[row, slot, grp - row * groups] = logsumexp(lr, axis=1) - math.log(g)
        set_at = np.full((n_rows, r, groups), -1, dtype=np.int64)
        set_at[row, slot, grp - row * groups] = slot
        set_at = np.maximum.accumulate(set_at, axis=1)
        value0 = logsumexp(log_lr0, axis=2) - math.log(g)
        value = np.where(set_at >= 0, np.take_along_axis(value, np.maximum(set_at, 0), axis=1), value0[:, None, :])
        stats = np.where(blocks.closed, logsumexp(value + log_w[:, None, :], axis=2), -np.inf)
        hit = (stats >= self.threshold) & (st["max_stat"] < self.threshold)[:, None]
        rows = np.flatnonzero(hit.any(axis=1))
        if rows.size:
            first[rows] = blocks.close_positions()[rows, np.argmax(hit[rows], axis=1)]
        end = np.r_[grp[1:] != grp[:-1], True]
        flat = flat.copy()
        flat[grp[end]] = lr[end]
        st["log_lr"] = flat.reshape(n_rows, groups * g)
        st["stat"] = logsumexp(value[:, -1] + log_w, axis=1)
        st["max_stat"] = np.maximum(st["max_stat"], stats.max(axis=1))
        return first

    @abstractmethod
    def _fresh(self, n_rows: int) -> State:
        """The subclass's variables after a reset (``log_lr`` and ``pending`` at least)."""

    @abstractmethod
    def _check_values(self, x: Floats) -> None:
        """Raise a ``ValueError`` on observations this test does not take."""

    @abstractmethod
    def _increments(self, st: State, x: Floats, lab: NDArray[np.bool_],
                    blocks: Blocks) -> tuple[Floats, Floats, Ints, Floats]:
        """``(log_lr0 (S, K, G), log_weights (S, K), where (P,), increments (P, G))``.

        The statistic is ``log sum_k w_k mean_g exp(log_lr[k, g])``: ``K`` groups (quantiles, categories) of
        ``G`` alternatives each, weights summing to at most one. ``where`` are distinct flat indices into
        ``(S, width, K)``, closed blocks only, of the groups a block moved, and ``increments`` their log
        likelihood ratios. The subclass also updates ``pending`` and its own variables in ``st``.
        """

    # -- checkpoints -------------------------------------------------------------------------------------
    def _common_vars(self) -> State:
        st = self._st
        return {"n_canary": int(st["n_canary"][0]), "n_baseline": int(st["n_baseline"][0]),
                "pending": st["pending"][0].tolist(), "log_lr": st["log_lr"][0].tolist(),
                "max_stat": float(st["max_stat"][0]), "statistic": float(st["stat"][0])}

    def _load_common(self, state: State) -> None:
        st = self._st
        st["n_canary"] = np.array([int(state["n_canary"])], np.int64)
        st["n_baseline"] = np.array([int(state["n_baseline"])], np.int64)
        st["pending"] = np.asarray(state["pending"], dtype=np.float64)[None]
        st["log_lr"] = np.asarray(state["log_lr"], dtype=np.float64).reshape(1, -1)
        st["max_stat"] = np.array([float(state["max_stat"])])
        st["stat"] = np.array([float(state["statistic"])])


def fisher_tables(n_c: Floats, k_c: Floats, n_s: Floats, k_s: Floats, log_psi: Floats) -> Floats:
    """:func:`fisher_log_lr` of ``T`` tables, computed once per distinct table (blocks repeat a few small
    tables over and over) in one call."""
    if n_c.size < 64:
        return fisher_log_lr(n_c, k_c, n_s, k_s, log_psi)
    tables = np.stack([n_c, k_c, n_s, k_s], axis=1).astype(np.int64)
    base = int(tables.max()) + 1
    if base ** 4 < 2**62:  # one integer per table: a 1-D unique is much faster than a row-wise one
        code = ((tables[:, 0] * base + tables[:, 1]) * base + tables[:, 2]) * base + tables[:, 3]
        _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
        uniq = tables[first]
    else:
        uniq, inverse = np.unique(tables, axis=0, return_inverse=True)
    lr = fisher_log_lr(uniq[:, 0], uniq[:, 1], uniq[:, 2], uniq[:, 3], log_psi)
    out: Floats = lr[inverse.ravel()]
    return out


def fisher_increments(sums: Floats, tested: NDArray[np.bool_], log_psi: Floats) -> tuple[Ints, Floats]:
    """Fisher log likelihood ratios of the ``tested`` ``(S, width)`` blocks, from ``(S, width, 2, 1 + q)`` sums.

    Column 0 of the sums counts observations; columns ``1..q`` count outcomes of ``q`` indicator tables that
    share those margins. Returns ``(where, increments)`` as :meth:`BlockedTwoSampleTest._increments` does,
    with ``K = q``; one :func:`fisher_log_lr` call covers every table.
    """
    q = sums.shape[3] - 1
    slots = np.flatnonzero(tested)
    where = (slots[:, None] * q + np.arange(q)[None, :]).ravel()
    t = sums[tested]  # (T, 2, 1 + q)
    if t.shape[0] == 0:
        return where, np.zeros((0, log_psi.size))
    n_s, n_c = np.repeat(t[:, 0, 0], q), np.repeat(t[:, 1, 0], q)
    return where, fisher_tables(n_c, t[:, 1, 1:].ravel(), n_s, t[:, 0, 1:].ravel(), log_psi)
