"""Measurements of a built variant: latency, accuracy, footprint."""
