"""Pure online detectors: numpy and scipy only, no I/O, no clock, never an import of ``controller``."""

from detectors.alpha import AlphaBudget
from detectors.mixture_fisher import MixtureFisherTest, fisher_log_lr

__all__ = ["AlphaBudget", "MixtureFisherTest", "fisher_log_lr"]
