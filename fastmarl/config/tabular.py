"""The tabular IQL config (:mod:`fastmarl.algos.tabular`); checked when built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastmarl.config.base import ConfigError, check_int, check_positive, check_unit, config_from_dict
from fastmarl.envs.wrappers import WARN_ENTRIES


@dataclass
class TabularConfig:
    """Independent tabular Q-learning: ``fastmarl.train.runner.train_tabular(env, TabularConfig(...))``."""

    total_steps: int = 100_000
    """env steps to train for (one step of one env; E per iteration)"""
    lr: float = 0.1
    """learning rate (step size) of the Q update"""
    gamma: float = 0.99
    """discount factor"""
    epsilon_start: float = 1.0
    """exploration rate at the start"""
    epsilon_end: float = 0.05
    """exploration rate after the decay"""
    epsilon_decay_steps: int = 50_000
    """env steps over which epsilon decays linearly"""
    shared_table: bool = False
    """one table per group shared by its agents (False: one table per agent)"""
    init_value: float = 0.0
    """initial value of every table entry (optimistic > 0 drives exploration)"""
    obs_encoding: Literal["bins", "integer", "onehot"] = "bins"
    """how observations become state indices (see fastmarl.envs.wrappers.Discretizer)"""
    bins: int | list[int] = 10
    """bins per observation feature (obs_encoding='bins')"""
    low: float | list[float] | None = None
    """lower bounds per feature; None: the observation space's (must be finite)"""
    high: float | list[float] | None = None
    """upper bounds per feature; None: the observation space's (must be finite)"""
    seed: int = 0
    """seed of exploration and tie-breaking"""
    warn_entries: int = WARN_ENTRIES
    """warn when a group's tables hold more entries than this"""

    def __post_init__(self) -> None:
        check_int("total_steps", self.total_steps, 1)
        check_int("epsilon_decay_steps", self.epsilon_decay_steps, 0)
        check_positive("lr", self.lr)
        for name in ("gamma", "epsilon_start", "epsilon_end"):
            check_unit(name, getattr(self, name))
        if self.obs_encoding not in ("bins", "integer", "onehot"):
            raise ConfigError(f"obs_encoding must be 'bins', 'integer' or 'onehot', got {self.obs_encoding!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TabularConfig":
        """Unknown keys are errors (a typo never silently uses a default)."""
        return config_from_dict(cls, d)
