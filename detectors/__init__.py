"""Pure online detectors: numpy and scipy only, no I/O, no clock, never an import of ``controller``.

Two families, kept apart:

* the tests of a canary against its baseline, which the live analysis and the rollback path use
  (:mod:`detectors.mixture_fisher` on stratified 2x2 tables, the alpha budget in :mod:`detectors.alpha`,
  the exceedance pieces in :mod:`detectors.exceedance`) and the other two-sample tests beside them
  (:mod:`detectors.bernoulli`, :mod:`detectors.poisson`, :mod:`detectors.categorical`);
* single-stream change detection for ``vigil detect`` and offline analysis, in :mod:`detectors.change`
  (CUSUMs, Page-Hinkley, BOCPD, RobustShift). The live path never imports it (an import-linter contract).
"""

from detectors.alpha import AlphaBudget, SegmentBudget
from detectors.bernoulli import BernoulliTest
from detectors.categorical import CategoricalTest
from detectors.change import BOCPD, BernoulliCUSUM, GaussianCUSUM, PageHinkley, RobustShift
from detectors.exceedance import OrdinalExceedanceTest, QuantileExceedanceTest
from detectors.mixture_fisher import MixtureFisherTest, fisher_log_lr
from detectors.poisson import PoissonRateTest

__all__ = ["BOCPD", "AlphaBudget", "BernoulliCUSUM", "BernoulliTest", "CategoricalTest", "GaussianCUSUM",
           "MixtureFisherTest", "OrdinalExceedanceTest", "PageHinkley", "PoissonRateTest", "QuantileExceedanceTest",
           "RobustShift", "SegmentBudget", "fisher_log_lr"]
