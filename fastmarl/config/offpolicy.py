"""The off-policy actor-critics' configs (MASAC / ISAC and MADDPG / IDDPG) and their validation.

``SACConfig`` and ``DDPGConfig`` share every field of :class:`OffPolicyConfig`
(env, budget, replay, networks, logging) and add their own (the entropy
temperature; the exploration noise and Gumbel-softmax temperature).
``validate_offpolicy`` checks a config against the env's spec and resolves what
depends on it (the stored sequence length, the entropy targets) in an
:class:`OffPolicyDerived`; an env an algorithm cannot handle is refused with the
reason and the algorithms that do apply to it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import tyro

from fastmarl.config.algorithms import algo_spec, applicable_algorithms
from fastmarl.config.base import (
    ConfigError,
    EnvBackend,
    EnvKwargs,
    StepCount,
    check_int,
    check_positive,
    check_run,
    check_unit,
    config_from_dict,
)
from fastmarl.config.images import refuse_images
from fastmarl.envs.api import EnvSpec


@dataclass
class OffPolicyConfig:
    """What MASAC/ISAC and MADDPG/IDDPG share (build a SACConfig or a DDPGConfig)."""

    env: str = "simple_spread_v3"
    """env id, e.g. simple_spread_v3 (box actions: `--env-kwargs continuous_actions=True`); `fastmarl envs` lists
    them"""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """env keyword arguments, e.g. `--env-kwargs N=3 continuous_actions=True`"""
    total_steps: StepCount = 1_000_000
    """env steps to train for (one step of one env); e.g. 1e6"""
    num_envs: int = 16
    """parallel envs collecting experience"""
    seed: int = 0
    """seed of env, network initialisation, exploration and replay sampling"""
    device: str = "cpu"
    """torch device"""
    threads: int | None = None
    """torch CPU threads (None: torch's default)"""
    env_backend: EnvBackend = "inprocess"
    """where a pz: env's copies are stepped: inprocess (a loop in this process), process (--env-workers
    subprocesses on this machine) or ray (--env-workers Ray actors; pip install 'fastmarl[ray]'); same results"""
    env_workers: int | None = None
    """workers of --env-backend process or ray (None: one per CPU core, at most num_envs)"""

    buffer_size: int = 8000
    """episodes (or chunks of max_seq_len steps) kept in the replay buffer (200k transitions of 25-step MPE)"""
    max_seq_len: int | None = None
    """longest stored sequence; None: the env's max_episode_steps (longer episodes are cut into chunks)"""
    batch_size: int = 512
    """transitions per gradient update"""
    learning_starts: int = 2000
    """env steps (all envs together) before the first update; they are collected with uniform random actions"""
    update_interval: int = 16
    """env steps (all envs together) per gradient update (16 envs: one update per collect)"""

    actor_lr: float = 1e-3
    """actor learning rate (Adam)"""
    critic_lr: float = 1e-3
    """critic learning rate (Adam)"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """target network Polyak rate, every update: target <- tau * online + (1 - tau) * target"""
    grad_clip: float = 10.0
    """gradient norm clipping per network (actor, critic) and group"""
    hidden_size: int = 128
    """width of the hidden layers of actors and critics"""
    num_layers: int = 2
    """hidden ReLU layers of actors and critics"""
    share_params: bool = True
    """one actor and one critic per group shared by its agents (False: one per agent, batched)"""
    agent_id: bool = True
    """append a one-hot agent index to actor and critic inputs (only with shared parameters)"""
    critic_obs: bool = True
    """centralised critics (masac, maddpg): append the agent's own observation to the global state"""

    log_interval: StepCount = 10_000
    """env steps between rows of training metrics"""
    eval_interval: StepCount = 0
    """env steps between evaluations (0: only at the end)"""
    eval_episodes: int = 32
    """episodes per evaluation"""
    runs_dir: str | None = None
    """write a run directory (config, metrics.csv, eval.csv, checkpoint) under this folder; None: no files
    (`fastmarl train` defaults to runs)"""
    name: str | None = None
    """run name (default: env__algo__seed__time)"""
    tensorboard: bool = False
    """also write TensorBoard events (with runs_dir)"""
    checkpoint_interval: StepCount = 500_000
    """env steps between checkpoints (with runs_dir; 0: only at the end); `fastmarl train --resume` continues
    from the latest"""
    keep_checkpoints: int = 2
    """checkpoints kept on disk (oldest deleted first)"""
    gif: bool = False
    """render a GIF of a deterministic evaluation episode at the end (with runs_dir)"""
    progress: bool = True
    """show a progress bar"""
    checkpoint_replay: bool = True
    """save the replay buffer with every checkpoint (what an exact resume needs; False: small checkpoints that
    can be evaluated and rendered but not resumed)"""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Build from a dict (e.g. a run's config.json); unknown keys are errors."""
        return config_from_dict(cls, d)


@dataclass
class SACConfig(OffPolicyConfig):
    """MASAC / ISAC: ``fastmarl.train(SACConfig(algo="masac", env="simple_spread_v3", ...))``."""

    algo: Annotated[Literal["masac", "isac"], tyro.conf.Suppress] = "masac"
    """masac: twin critics on the global state and the joint action; isac: on the agent's own observation and
    action"""
    alpha_init: float = 0.2
    """initial entropy temperature"""
    autotune_alpha: bool = True
    """learn the temperature so that the policy's entropy tracks target_entropy (False: keep alpha_init)"""
    alpha_lr: float = 3e-4
    """temperature learning rate (Adam on log alpha)"""
    target_entropy: float | None = None
    """entropy the temperature aims at, per agent; None: -action_dim (continuous) or 0.3 * log(n) (n discrete
    actions)"""


@dataclass
class DDPGConfig(OffPolicyConfig):
    """MADDPG / IDDPG: ``fastmarl.train(DDPGConfig(algo="maddpg", env="simple_spread_v3", ...))``."""

    algo: Annotated[Literal["maddpg", "iddpg"], tyro.conf.Suppress] = "maddpg"
    """maddpg: a critic per agent on the global state and the joint action; iddpg: on its own observation and
    action"""
    exploration_noise: float = 0.1
    """continuous actions: std of the Gaussian noise added to the actor's action while collecting, as a
    fraction of the half-width of the action box"""
    gumbel_temperature: float = 1.0
    """discrete actions: temperature of the straight-through Gumbel-softmax the actor is trained through"""


@dataclass(frozen=True)
class OffPolicyDerived:
    max_seq_len: int
    centralized: bool
    """the critics see the global state and the joint action"""
    target_entropy: dict[str, float]
    """SAC: group -> the temperature's entropy target per agent ({} for DDPG)"""


def _refuse(cfg: OffPolicyConfig, spec: EnvSpec, reason: str) -> ConfigError:
    others = [a for a in applicable_algorithms(spec) if a != cfg.algo]
    alt = f"algorithms that apply to {spec.env_id}: {', '.join(others)}" if others else \
        f"no fastmarl algorithm applies to {spec.env_id} as configured"
    return ConfigError(f"{cfg.algo} cannot train on {spec.env_id}: {reason}; {alt}")


def validate_offpolicy(cfg: OffPolicyConfig, spec: EnvSpec) -> OffPolicyDerived:
    """Check ``cfg`` (a SACConfig or DDPGConfig) against the env ``spec``; ConfigError says what to change."""
    family = "sac" if isinstance(cfg, SACConfig) else "ddpg"
    algo = algo_spec(cfg.algo, family)
    refuse_images(cfg.algo, spec)
    check_run(cfg, log_interval_low=1)
    for name, low in [("buffer_size", 1), ("batch_size", 1), ("learning_starts", 0), ("update_interval", 1),
                      ("hidden_size", 1), ("num_layers", 1)]:
        check_int(name, getattr(cfg, name), low)
    for name in ("actor_lr", "critic_lr", "grad_clip"):
        check_positive(name, getattr(cfg, name))
    check_unit("gamma", cfg.gamma)
    check_positive("tau", cfg.tau)
    check_unit("tau", cfg.tau, "must be in (0, 1]")
    if isinstance(cfg, SACConfig):
        check_positive("alpha_init", cfg.alpha_init)
        check_positive("alpha_lr", cfg.alpha_lr)
        if cfg.target_entropy is not None and (isinstance(cfg.target_entropy, bool)
                                               or not math.isfinite(cfg.target_entropy)):
            raise ConfigError(f"target_entropy must be a finite number or None (the default), got "
                              f"{cfg.target_entropy!r}")
    else:
        check_unit("exploration_noise", cfg.exploration_noise, "must be in [0, 1] (a fraction of the box)")
        check_positive("gumbel_temperature", cfg.gumbel_temperature)

    if spec.has_action_mask:
        raise _refuse(cfg, spec, "its discrete actions come with action masks, which the off-policy "
                                 "actor-critics do not apply")
    for g in spec.groups.values():
        if g.discrete and not algo.discrete:
            raise _refuse(cfg, spec, f"group {g.name!r} has discrete actions")
        if not g.discrete:
            if not algo.continuous:
                raise _refuse(cfg, spec, f"group {g.name!r} has continuous actions")
            low, high = g.action_space.low, g.action_space.high
            if not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise _refuse(cfg, spec, f"group {g.name!r} has an unbounded action box ({g.action_space}); the "
                                         "tanh-squashed actors need finite bounds (wrap the env to rescale it)")
    if algo.needs_state and spec.state_dim == 0:
        raise ConfigError(f"{cfg.algo}'s critics read the global state, but {spec.env_id} has no state() "
                          f"(state_dim 0); use algo={'isac' if family == 'sac' else 'iddpg'!r}, whose critics see "
                          "each agent's own observation and action")
    T = cfg.max_seq_len if cfg.max_seq_len is not None else spec.max_episode_steps
    if T is None:
        raise ConfigError(f"{spec.env_id} has no episode limit (max_episode_steps None): set max_seq_len to the "
                          "length of the stored sequences (longer episodes are cut into chunks)")
    check_int("max_seq_len", T, 1)
    entropy: dict[str, float] = {}
    if isinstance(cfg, SACConfig):
        for n, g in spec.groups.items():
            default = 0.3 * math.log(g.action_dim) if g.discrete else -float(g.action_dim)
            entropy[n] = float(cfg.target_entropy) if cfg.target_entropy is not None else default
    return OffPolicyDerived(max_seq_len=T, centralized=algo.centralized_critic, target_entropy=entropy)


__all__ = ["DDPGConfig", "OffPolicyConfig", "OffPolicyDerived", "SACConfig", "validate_offpolicy"]
