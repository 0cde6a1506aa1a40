"""The study: search space, Optuna storage, trial records, Pareto front and reports."""
