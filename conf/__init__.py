"""Hydra configs shipped inside the distribution: Hydra reads them as ``pkg://infersearch.conf``."""
