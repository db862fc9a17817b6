"""Ingest: the metric catalog, one-second bucket summaries, and the aggregator that fills them from events."""
