"""The engine: coordinator, workers, averaging, collector and the two backends."""
