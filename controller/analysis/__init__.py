"""Analysis: the canary-versus-stable tests (strata, thresholds, segments, the alpha budget)."""
