"""The three detector contracts every detector in this package follows, and the registry of detectors.

* :class:`ChangeDetector` watches one stream: ``update(x)`` returns whether that observation raised an
  alarm; after an alarm the detector restarts on the next observation (as river's detectors do), so one
  detector finds every change of a long series. Its guarantee is an average run length to false alarm
  (``arl``) on an in-control stream.
* :class:`TwoSampleTest` compares a canary with a baseline: ``update(x, is_canary)``. It is
  anytime-valid: the probability that it *ever* alarms on two streams of the same law, however long it
  watches, is at most ``alpha``. Its alarm stays raised until :meth:`TwoSampleTest.reset`.
* :class:`TableTest` is the same anytime-valid promise on counts already summed per stratum (one 2x2 table
  of canary and baseline trials and harmful outcomes per time bucket and channel, say), the form in which
  the live analysis sees a rate: ``update(n_c, k_c, n_s, k_s)``.

All three take observations one at a time (``update``) or as numpy arrays (``update_many``, the fast path,
with the same result as repeated ``update`` up to floating-point rounding), validate their parameters at
construction with a ``ValueError`` naming the parameter, and checkpoint to a JSON-safe dict
(:meth:`to_state`) from which :func:`from_state` resumes identically.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["REGISTRY", "ChangeDetector", "TableTest", "TwoSampleTest", "check_finite", "check_positive",
           "check_probability", "from_state"]

REGISTRY: dict[str, type[ChangeDetector] | type[TwoSampleTest] | type[TableTest]] = {}


def check_probability(name: str, value: float, *, open_low: bool = True) -> float:
    """``value`` in (0, 1) (or [0, 1) with ``open_low=False``), else a ``ValueError`` naming ``name``."""
    v = float(value)
    if not (0.0 < v < 1.0 if open_low else 0.0 <= v < 1.0):
        raise ValueError(f"{name} must be in {'(' if open_low else '['}0, 1), got {value!r}")
    return v


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return v


def check_finite(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


class _Checkpointed:
    """Parameters and variables to and from a JSON-safe dict."""

    name: ClassVar[str] = ""
    #: The observations it takes: "real" numbers, "binary" 0/1 outcomes, non-negative "count"s, "ordinal"
    #: small integers, "category" integer codes, or "table"s of counts (:class:`TableTest`). The shared
    #: contract tests draw streams of this kind.
    kind: ClassVar[str] = "real"

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        """Constructor arguments for the shared contract tests (as river's detectors have)."""
        return {}

    @classmethod
    def _invalid_params(cls) -> list[tuple[dict[str, Any], str]]:
        """Invalid constructor arguments and the parameter name each ``ValueError`` must mention."""
        return []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            REGISTRY[cls.name] = cls  # type: ignore[assignment]

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON-safe)."""

    @abstractmethod
    def _vars(self) -> dict[str, Any]:
        """The running variables (JSON-safe)."""

    @abstractmethod
    def _load(self, state: dict[str, Any]) -> None:
        """Set the running variables from :meth:`_vars`' output."""

    def to_state(self) -> dict[str, Any]:
        """A JSON-safe snapshot: ``{"detector", "params", "vars"}``."""
        return {"detector": self.name, "params": self.params(), "vars": self._vars()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Any:
        if cls.name and state.get("detector") != cls.name:
            raise ValueError(f"state is of detector {state.get('detector')!r}, not {cls.name!r}")
        det = cls(**state["params"])
        det._load(state["vars"])
        return det

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class ChangeDetector(_Checkpointed, ABC):
    """A single-stream change detector; see the module docstring for the contract.

    Subclasses keep ``_alarm`` (the last observation raised an alarm) and ``_n`` (observations since the
    last restart) up to date.
    """

    _alarm: bool = False
    _n: int = 0

    @property
    @abstractmethod
    def arl(self) -> float:
        """The average run length to a false alarm on an in-control stream that the threshold is set for."""

    @property
    @abstractmethod
    def statistic(self) -> float:
        """The detection statistic after the last observation."""

    @property
    @abstractmethod
    def threshold(self) -> float:
        """The statistic at or above which the detector alarms."""

    @property
    def alarm(self) -> bool:
        """Whether the last observation raised an alarm."""
        return self._alarm

    @property
    def n(self) -> int:
        """Observations since the last (re)start."""
        return self._n

    @abstractmethod
    def reset(self) -> None:
        """Forget everything seen; the next observation starts afresh."""

    @abstractmethod
    def update(self, x: float) -> bool:
        """Take one observation; True when it raises an alarm."""

    def update_many(self, xs: ArrayLike) -> NDArray[np.intp]:
        """Take many observations; the indices (into ``xs``) of those that raised an alarm.

        The default loops over :meth:`update`; detectors override it with a vectorized path.
        """
        arr = np.asarray(xs, dtype=np.float64).ravel()
        return np.flatnonzero(np.fromiter((self.update(float(x)) for x in arr), dtype=bool, count=arr.size))


class _AnytimeValid(_Checkpointed, ABC):
    """What the two anytime-valid contracts share: a level, an e-value statistic, a standing alarm."""

    @property
    @abstractmethod
    def alpha(self) -> float:
        """The false-alarm probability over an unbounded watch."""

    @property
    @abstractmethod
    def statistic(self) -> float:
        """The log e-value (log likelihood ratio) after the last observation."""

    @property
    def threshold(self) -> float:
        """``log(1/alpha)``: by Ville's inequality, the statistic reaches it with probability <= alpha."""
        return math.log(1.0 / self.alpha)

    @property
    @abstractmethod
    def alarm(self) -> bool:
        """Whether the statistic has ever reached the threshold since the last reset."""

    @property
    @abstractmethod
    def p_value(self) -> float:
        """Anytime-valid p-value: ``min(1, 1/max e-value so far)``."""

    @abstractmethod
    def reset(self) -> None:
        """Forget everything seen."""


class TwoSampleTest(_AnytimeValid):
    """An anytime-valid test of a canary against a baseline; see the module docstring for the contract."""

    @abstractmethod
    def update_many(self, xs: ArrayLike, is_canary: ArrayLike) -> bool:
        """Take many observations, each tagged canary (True) or baseline (False); return :attr:`alarm`."""

    def update(self, x: float, is_canary: bool) -> bool:
        """Take one observation; return :attr:`alarm`."""
        return self.update_many([x], [is_canary])


class TableTest(_AnytimeValid):
    """An anytime-valid test of a canary against a baseline on stratified 2x2 tables of counts.

    Each observation is one table: ``n_c`` canary trials with ``k_c`` harmful outcomes beside ``n_s``
    baseline trials with ``k_s``, from one stratum. The guarantee is :class:`TwoSampleTest`'s: under the
    null the statistic ever reaches :attr:`threshold` with probability at most ``alpha``.
    """

    kind: ClassVar[str] = "table"

    @abstractmethod
    def update_many(self, n_c: ArrayLike, k_c: ArrayLike, n_s: ArrayLike, k_s: ArrayLike) -> bool:
        """Take many tables, given column by column; return :attr:`alarm`."""

    def update(self, n_c: int, k_c: int, n_s: int, k_s: int) -> bool:
        """Take one table; return :attr:`alarm`."""
        return self.update_many([n_c], [k_c], [n_s], [k_s])


def from_state(state: dict[str, Any]) -> ChangeDetector | TwoSampleTest | TableTest:
    """Rebuild any registered detector from :meth:`to_state`'s output."""
    name = state.get("detector")
    if name not in REGISTRY:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name].from_state(state)  # type: ignore[no-any-return]
