"""Pure online detectors: numpy and scipy only, no I/O, no clock, never an import of ``controller``."""

from detectors.alpha import AlphaBudget, SegmentBudget
from detectors.bernoulli import BernoulliTest
from detectors.bocpd import BOCPD
from detectors.categorical import CategoricalTest
from detectors.cusum_bernoulli import BernoulliCUSUM
from detectors.cusum_gaussian import GaussianCUSUM
from detectors.exceedance import OrdinalExceedanceTest, QuantileExceedanceTest
from detectors.mixture_fisher import MixtureFisherTest, fisher_log_lr
from detectors.page_hinkley import PageHinkley
from detectors.poisson import PoissonRateTest
from detectors.robust_shift import RobustShift

__all__ = ["BOCPD", "AlphaBudget", "BernoulliCUSUM", "BernoulliTest", "CategoricalTest", "GaussianCUSUM",
           "MixtureFisherTest", "OrdinalExceedanceTest", "PageHinkley", "PoissonRateTest", "QuantileExceedanceTest",
           "RobustShift", "SegmentBudget", "fisher_log_lr"]
