"""Wire contracts: the records vigil reads and writes (events, decisions, the verdict document, checkpoints)."""
