"""Policy: the rollout state machine (steps, promotion, rollback) and its guards."""
