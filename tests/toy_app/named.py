"""A task that returns a dict of named metrics; the sweeper's direction names the ones to optimise."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="named-conf", config_name="config")
def train(cfg: DictConfig) -> dict[str, float]:
    loss = (cfg.lr - 0.1) ** 2 + cfg.width / 1000
    return {"loss": loss, "accuracy": 1 - loss, "width": float(cfg.width)}


if __name__ == "__main__":
    train()
