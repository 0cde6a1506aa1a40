"""A search space extended in code: z depends on the x the sampler chose; w is a new key."""

import hydra
from omegaconf import DictConfig
from optuna.trial import Trial


@hydra.main(version_base="1.3", config_path="custom-search-space", config_name="config")
def multi_dimensional_sphere(cfg: DictConfig) -> float:
    return cfg.w**2 + cfg.x**2 + cfg.y**2 + cfg.z**2


def configure(cfg: DictConfig, trial: Trial) -> None:
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_z_difference_from_x, x + cfg.max_z_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)  # +w: a key the config does not have


if __name__ == "__main__":
    multi_dimensional_sphere()
