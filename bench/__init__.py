"""The bench: one corpus, one query set and one set of metrics for every identification method."""
