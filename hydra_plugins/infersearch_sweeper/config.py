from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class InfersearchSweeperConf:
    """Study settings live in the job config (``study.*``, ``space``); only loop limits here."""

    _target_: str = "hydra_plugins.infersearch_sweeper.sweeper.InfersearchSweeper"
    max_reuse_streak: int = 100  # stop when the sampler proposes only already-evaluated configurations


ConfigStore.instance().store(
    group="hydra/sweeper", name="infersearch", node=InfersearchSweeperConf, provider="infersearch"
)
