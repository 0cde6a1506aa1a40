"""Optimization passes: each takes a model and its settings and returns a model."""
