"""The study: search space, Optuna storage, the trial record, Pareto front, confirmation and export."""
