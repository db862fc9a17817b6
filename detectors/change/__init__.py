"""Single-stream change detection (the :class:`~detectors.base.ChangeDetector` contract): what
``vigil detect`` runs over a metric series, apart from the canary-against-baseline tests of the live path.

One idea per module: the ARL and threshold numerics (:mod:`~detectors.change.arl`), the fixed-point Lindley
recursion (:mod:`~detectors.change.lindley`), the CUSUM base (:mod:`~detectors.change.cusum`) and its
detectors (:mod:`~detectors.change.cusum_gaussian`, :mod:`~detectors.change.cusum_bernoulli`,
:mod:`~detectors.change.page_hinkley`), :mod:`~detectors.change.bocpd` and
:mod:`~detectors.change.robust_shift` (the default of ``vigil detect``).
"""

from detectors.change.bocpd import BOCPD
from detectors.change.cusum_bernoulli import BernoulliCUSUM
from detectors.change.cusum_gaussian import GaussianCUSUM
from detectors.change.page_hinkley import PageHinkley
from detectors.change.robust_shift import RobustShift

__all__ = ["BOCPD", "BernoulliCUSUM", "GaussianCUSUM", "PageHinkley", "RobustShift"]
