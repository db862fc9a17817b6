"""Anytime-valid two-sample test of a category mix (intent, finish reason, channel), one code at a time.

Observations are grouped into label-only blocks (:mod:`detectors.blocks`). At a block's close each
category ``c`` gives a one-vs-rest 2x2 table (canary and baseline observations, how many of them are ``c``);
if within the block canary and baseline categories are exchangeable (the null: one category distribution
for both arms), each table is hypergeometric given its margins, and a mixture SPRT on Fisher's noncentral
hypergeometric likelihood, with odds ratios from 1/10 to 10 (two-sided: a category may rise or fall), runs
per category.

The categories share ``alpha`` through an :class:`~detectors.alpha.AlphaBudget`: categories named in
advance split ``alpha * (1 - reserve)``; the others draw from the reserve as they first appear (in a closed
block; several new in one block in code order), the i-th getting ``reserve * alpha / 2**i``, so however many
appear the levels sum to at most ``alpha``. The statistic is the weighted average of the categories'
mixture likelihood ratios, weight ``level / alpha`` (the weight not yet given out counts as a likelihood
ratio of one): a martingale with mean one under the null that alarms whenever a category's own mixture
reaches ``log(1 / level)``, and sometimes sooner. By Ville's inequality it ever reaches ``log(1/alpha)``
with probability at most ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from detectors.alpha import AlphaBudget
from detectors.blocks import BlockedTwoSampleTest, Blocks, Floats, Ints, State, fisher_tables, logsumexp
from detectors.mixture_fisher import default_log_psi

__all__ = ["CategoricalTest"]


def _two_sided_grid() -> Floats:
    return np.concatenate([default_log_psi("decrease")[::-1], default_log_psi("increase")])


class CategoricalTest(BlockedTwoSampleTest):
    """Anytime-valid test that the canary's category distribution differs from the baseline's.

    One-vs-rest mixture Fisher tests, one per category, share ``alpha`` through an
    :class:`~detectors.alpha.AlphaBudget` with a reserve for categories first seen mid-rollout. Under the
    null (within a block, canary and baseline categories exchangeable) the probability that it ever alarms
    is at most ``alpha``, all categories together, however many appear and however long it watches, whatever
    the category mix and the canary share do over time. The alarm is sticky until :meth:`reset`.

    Parameters
    ----------
    alpha:
        False-alarm probability over an unbounded watch, in (0, 1).
    categories:
        Integer codes known in advance; they share ``alpha * (1 - reserve)``. Others draw from the reserve.
    reserve:
        Share of ``alpha`` kept for categories not named in advance, in [0, 1); with no ``categories`` it
        is all of it.
    block:
        Observations of the rarer arm per block (>= 1).

    >>> import numpy as np
    >>> rng = np.random.default_rng(5)
    >>> canary = rng.random(30_000) < 0.10
    >>> mix = np.array([0.40, 0.25, 0.15, 0.12, 0.08])
    >>> doubled = np.array([0.40, 0.25, 0.15, 0.24, 0.08]) / 1.12     # intent 3's share doubled
    >>> intent = np.where(canary, rng.choice(5, 30_000, p=doubled), rng.choice(5, 30_000, p=mix))
    >>> test = CategoricalTest(alpha=0.01, categories=[0, 1, 2, 3, 4])
    >>> test.update_many(intent, canary), test.p_value < 0.01
    (True, True)
    >>> CategoricalTest(alpha=0.01).update_many(rng.choice(5, 30_000, p=mix), canary)
    False
    """

    name = "categorical"
    kind = "category"
    _chunk = 1024
    _rows = 64
    _shared: ClassVar[frozenset[str]] = frozenset({"codes"})

    def __init__(self, alpha: float = 0.01, categories: Sequence[int] | None = None, reserve: float = 0.2,
                 block: int = 5) -> None:
        super().__init__(alpha, block)
        try:
            known = [] if categories is None else [int(c) for c in categories]
            ok = categories is None or all(float(c) == int(c) for c in categories)
        except (TypeError, ValueError):
            ok = False
        if not ok or len(set(known)) != len(known):
            raise ValueError(f"categories must be distinct integer codes, got {categories!r}")
        r = float(reserve)
        if not 0.0 <= r < 1.0:
            raise ValueError(f"reserve must be in [0, 1), got {reserve!r}")
        self._known = sorted(known)
        self._reserve = r
        self._grid = _two_sided_grid()
        self.reset()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"alpha": 0.05, "categories": [0, 1], "block": 2}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        return [({"alpha": 1.0}, "alpha"), ({"categories": [1, 1]}, "categories"),
                ({"categories": [0.5]}, "categories"), ({"reserve": 1.0}, "reserve"), ({"block": 0}, "block")]

    def params(self) -> dict[str, Any]:
        return {"alpha": self._alpha, "categories": list(self._known), "reserve": self._reserve,
                "block": self._block}

    def _budget(self) -> AlphaBudget:
        return AlphaBudget(self._alpha, known=[str(c) for c in self._known], reserve=self._reserve)

    @property
    def levels(self) -> dict[int, float]:
        """The level allotted to each category so far."""
        st = self._st
        return {int(c): float(w) * self._alpha for c, w, a in zip(st["codes"], st["weight"][0], st["allotted"][0],
                                                                    strict=True) if a}

    def category_statistics(self) -> dict[int, float]:
        """Each allotted category's own log mixture likelihood ratio now (it alarms alone at ``log(1/level)``)."""
        st = self._st
        g = self._grid.size
        return {int(c): float(logsumexp(st["log_lr"][0, i * g:(i + 1) * g], axis=0)) - math.log(g)
                for i, c in enumerate(st["codes"]) if st["allotted"][0, i]}

    def _check_values(self, x: Floats) -> None:
        if not np.all(np.isfinite(x) & (x == np.floor(x)) & (np.abs(x) < 2.0**53)):
            raise ValueError("xs must be integer category codes")

    # -- the engine --------------------------------------------------------------------------------------
    def _fresh(self, n_rows: int) -> State:
        u = len(self._known)
        budget = self._budget()
        weight = np.array([budget.level(str(c)) / self._alpha for c in self._known])
        return {"codes": np.array(self._known, dtype=np.int64), "allotted": np.ones((n_rows, u), bool),
                "weight": np.repeat(weight[None, :], n_rows, axis=0),
                "pending": np.zeros((n_rows, 2, u)), "log_lr": np.zeros((n_rows, u * self._grid.size)),
                "budgets": [self._budget() for _ in range(n_rows)]}

    def _increments(self, st: State, x: Floats, lab: NDArray[np.bool_],
                    blocks: Blocks) -> tuple[Floats, Floats, Ints, Floats]:
        n_rows, g, r = x.shape[0], self._grid.size, blocks.width
        rows = np.arange(n_rows)
        cx = x.astype(np.int64)
        codes = np.union1d(st["codes"], cx.ravel())
        u = codes.size
        at = np.searchsorted(codes, st["codes"])
        allotted = np.zeros((n_rows, u), bool)
        weight = np.zeros((n_rows, u))
        pending = np.zeros((n_rows, 2, u))
        log_lr = np.zeros((n_rows, u, g))
        allotted[:, at], weight[:, at], pending[:, :, at] = st["allotted"], st["weight"], st["pending"]
        log_lr[:, at] = st["log_lr"].reshape(n_rows, at.size, g)
        # counts of (stream, block, category, arm) as sparse pairs: a long tail of categories stays cheap
        slot = rows[:, None] * r + blocks.rel
        ps, pa, pu = np.nonzero(pending)
        key = np.concatenate([(slot * u + np.searchsorted(codes, cx)).ravel(), ps * r * u + pu])
        arm = np.concatenate([lab.ravel().astype(np.int64), pa])
        pairs, inverse = np.unique(key, return_inverse=True)
        cnt = np.bincount(inverse.ravel() * 2 + arm, minlength=2 * pairs.size,
                          weights=np.concatenate([np.ones(x.size), pending[ps, pa, pu]])).reshape(-1, 2)
        p_s, p_r, p_u = pairs // (r * u), pairs // u % r, pairs % u
        n = np.bincount((slot * 2 + lab).ravel(), minlength=n_rows * r * 2).reshape(n_rows, r, 2).astype(np.float64)
        n[:, 0] += pending.sum(axis=2)  # (S, r, 2): observations per block and arm
        shut = p_r < blocks.n_closed[p_s]
        # categories first seen in a closed block draw their level, block by block, in code order
        first = np.full((n_rows, u), r)
        np.minimum.at(first, (p_s[shut], p_u[shut]), p_r[shut])
        active = first < r  # (S, u): the categories whose tests move
        for s in np.flatnonzero((active & ~allotted).any(axis=1)):
            new = np.flatnonzero(active[s] & ~allotted[s])
            for i in new[np.lexsort((codes[new], first[s, new]))]:
                weight[s, i] = st["budgets"][s].level(str(codes[i])) / self._alpha
                allotted[s, i] = True
        st["codes"], st["allotted"], st["weight"] = codes, allotted, weight
        left = p_r == blocks.n_closed[p_s]
        st["pending"] = np.zeros((n_rows, 2, u))
        st["pending"][p_s[left], :, p_u[left]] = cnt[left]
        # each row packs the categories that moved into k groups; the others, with the weight not given out,
        # make one more group that stays put
        k = int(active.sum(axis=1).max())
        cols = np.argsort(~active, axis=1, kind="stable")[:, :k]
        valid = np.take_along_axis(active, cols, axis=1)  # (S, k)
        group = np.cumsum(active, axis=1) - 1
        # the one-vs-rest table of every category present in a closed block (an absent one's table is
        # fixed by its margins and says nothing): one fisher_log_lr call
        ts, tr, tu, tc = p_s[shut], p_r[shut], p_u[shut], cnt[shut]
        inc = fisher_tables(n[ts, tr, 1], tc[:, 1], n[ts, tr, 0], tc[:, 0], self._grid)
        where = (ts * r + tr) * (k + 1) + group[ts, tu]
        rest = np.maximum(1.0 - weight.sum(axis=1), 0.0)
        with np.errstate(divide="ignore"):
            log_w = np.log(weight)  # (S, u); -inf for categories without a level
            log_rest = np.log(rest)
        still = np.where(~active[:, :, None], log_w[:, :, None] - math.log(g) + log_lr, -np.inf)
        const = logsumexp(np.concatenate([still.reshape(n_rows, u * g), log_rest[:, None]], axis=1), axis=1)
        st["_unpack"] = (log_lr, cols, valid)
        log_lr0 = np.concatenate([np.take_along_axis(log_lr, cols[:, :, None], axis=1),
                                  np.repeat(const[:, None, None], g, axis=2)], axis=1)
        log_w0 = np.concatenate([np.where(valid, np.take_along_axis(log_w, cols, axis=1), -np.inf),
                                 np.zeros((n_rows, 1))], axis=1)
        return log_lr0, log_w0, where, inc

    def _advance(self, st: State, x: Floats, lab: NDArray[np.bool_]) -> NDArray[np.int64]:
        first = super()._advance(st, x, lab)
        log_lr, cols, valid = st.pop("_unpack")
        g = self._grid.size
        moved = st["log_lr"].reshape(log_lr.shape[0], -1, g)[:, :-1]
        rows, j = np.nonzero(valid)
        log_lr[rows, cols[rows, j]] = moved[rows, j]
        st["log_lr"] = log_lr.reshape(log_lr.shape[0], -1)
        return first

    # -- checkpoints -------------------------------------------------------------------------------------
    def _vars(self) -> dict[str, Any]:
        out = self._common_vars()
        st = self._st
        out.update({"codes": st["codes"].tolist(), "allotted": st["allotted"][0].tolist(),
                    "weight": st["weight"][0].tolist(), "budget": st["budgets"][0].to_state()})
        return out

    def _load(self, state: dict[str, Any]) -> None:
        self._load_common(state)
        st = self._st
        st["codes"] = np.asarray(state["codes"], dtype=np.int64).reshape(-1)
        u = st["codes"].size
        st["allotted"] = np.asarray(state["allotted"], dtype=bool).reshape(1, u)
        st["weight"] = np.asarray(state["weight"], dtype=np.float64).reshape(1, u)
        st["pending"] = st["pending"].reshape(1, 2, u)
        st["budgets"] = [AlphaBudget.from_state(state["budget"])]
