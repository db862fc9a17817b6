"""Pure online detectors: numpy and scipy only, no I/O, no clock, never an import of ``controller``."""

from detectors.alpha import AlphaBudget
from detectors.bernoulli import BernoulliTest
from detectors.categorical import CategoricalTest
from detectors.exceedance import OrdinalExceedanceTest, QuantileExceedanceTest
from detectors.mixture_fisher import MixtureFisherTest, fisher_log_lr
from detectors.poisson import PoissonRateTest

__all__ = ["AlphaBudget", "BernoulliTest", "CategoricalTest", "MixtureFisherTest", "OrdinalExceedanceTest",
           "PoissonRateTest", "QuantileExceedanceTest", "fisher_log_lr"]
