"""The infersearch Hydra sweeper: Optuna 5 ask/tell over the configured launcher."""
