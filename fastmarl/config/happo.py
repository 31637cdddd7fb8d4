"""HAPPO's config: a PPO run (:class:`~fastmarl.config.ppo.TrainConfig`) with per-agent actors
by default and HAPPO's own options (:class:`HAPPOConfig`), and its validation.

``fastmarl train --algo happo --help`` lists every option: the run's, PPO's (``--lr``,
``--clip-coef``, ...) and HAPPO's (``--fixed-order``, ``--order-scope``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import tyro

from fastmarl.config.base import ConfigError
from fastmarl.config.images import check_images
from fastmarl.config.ppo import Derived, PPOConfig, TrainConfig, resolve
from fastmarl.envs.api import EnvSpec


@dataclass
class HAPPOConfig:
    """HAPPO's own options (the sequential update); the PPO hyper-parameters are under ``ppo``."""

    fixed_order: bool = False
    """update the agents in the env's agent order every iteration (default: a new random order each iteration,
    drawn from the run's seeded generator)"""
    order_scope: Literal["all", "group"] = "all"
    """all: one sequence over every agent of every group, the ratio product running across groups (a cooperative
    team whose groups differ, e.g. speaker and listener); group: each group its own sequence and product (groups
    with their own rewards, e.g. the predators and prey of simple_tag)"""


def _per_agent_ppo() -> PPOConfig:
    return PPOConfig(share_params=False)


@dataclass
class HAPPOTrainConfig(TrainConfig):
    """A HAPPO run: ``fastmarl train --algo happo --env simple_spread_v3``."""

    algo: Annotated[Literal["happo"], tyro.conf.Suppress] = "happo"
    """heterogeneous-agent PPO"""
    ppo: PPOConfig = field(default_factory=_per_agent_ppo)
    """PPO hyper-parameters (HAPPO's default: share_params False, one actor and critic per agent)"""
    happo: HAPPOConfig = field(default_factory=HAPPOConfig)
    """HAPPO's sequential update"""


def resolve_happo(cfg: HAPPOTrainConfig, spec: EnvSpec) -> Derived:
    """Validate a HAPPO run against ``spec`` (PPO's checks, then HAPPO's); derived sizes. Raises ConfigError."""
    if cfg.ppo.comm != "none":
        raise ConfigError(f"happo updates one agent's policy at a time while the others' stay fixed, but "
                          f"--comm {cfg.ppo.comm} makes every actor's policy depend on the other actors' networks; "
                          "use --algo mappo for learned communication (the env's message channel, --message-bits, "
                          "works with happo)")
    cnn = [n for n, use in check_images(cfg.ppo.images, spec).items() if use]
    if cnn:
        raise ConfigError(f"happo has separate actor and critic optimizers and updates one agent's actor at a time, "
                          f"but the observations of {cnn} are images, whose CNN torso actor and critic share; use "
                          "--algo mappo or ippo for image observations", ("ppo.images.encoder",))
    if cfg.happo.order_scope not in ("all", "group"):
        raise ConfigError(f"happo.order_scope must be 'all' or 'group', got {cfg.happo.order_scope!r}")
    return resolve(cfg, spec, family="happo")
