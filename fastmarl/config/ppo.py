"""The PPO family's config (IPPO, MAPPO) and its validation.

``TrainConfig`` describes a run (env, algorithm, budget, logging); ``PPOConfig``
the PPO hyper-parameters shared by IPPO and MAPPO. Both are plain dataclasses:
``fastmarl train`` parses them with tyro (one flag per field, the docstring under
each field is its help), Python users build them directly. ``resolve`` checks a
config against the env's spec and computes the derived sizes; every invalid
combination is a ``ConfigError`` that says what to do instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import tyro

from fastmarl.config.algorithms import algo_spec
from fastmarl.config.base import (
    ConfigError,
    EnvBackend,
    EnvKwargs,
    StepCount,
    check_at_least,
    check_finite,
    check_int,
    check_memory,
    check_positive,
    check_run,
    check_unit,
    config_from_dict,
)
from fastmarl.config.images import (
    ImageEncoderConfig,
    check_images,
    encoder_activation_floats,
    encoder_parameters,
    obs_itemsize,
)
from fastmarl.envs.api import EnvSpec


@dataclass
class PPOConfig:
    """PPO hyper-parameters (IPPO and MAPPO)."""

    num_steps: int = 25
    """rollout length: steps per env between two updates"""
    num_epochs: int = 4
    """passes over each rollout"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    lr: float = 3e-3
    """Adam learning rate (actor and critic)"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over the run"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip_coef: float = 0.2
    """PPO ratio clipping epsilon"""
    clip_vloss: bool = True
    """clip the value loss around the rollout's values (as the policy loss)"""
    vf_coef: float = 1.0
    """value loss coefficient"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    max_grad_norm: float = 10.0
    """gradient norm clipping, applied to actor and critic separately"""
    norm_adv: bool = True
    """standardise advantages per minibatch"""
    value_norm: bool = True
    """normalise value targets with running mean/std (MAPPO's value normalisation)"""
    hidden_size: int = 64
    """width of the hidden layers (and of the GRU)"""
    num_layers: int = 2
    """hidden layers of the MLP (before the GRU if recurrent)"""
    activation: Literal["tanh", "relu"] = "relu"
    """hidden activation"""
    recurrent: bool = False
    """add a GRU to actor and critic (rollouts keep hidden states, reset at episode ends)"""
    share_params: bool = True
    """one network per group shared by its agents; False: one network per agent (batched)"""
    agent_id: bool = True
    """append a one-hot agent index to actor and critic inputs (only with shared parameters)"""
    critic_obs: bool = True
    """MAPPO: append the agent's own observation to the global state in the critic input"""
    action_masks: bool | None = None
    """use the env's action masks (discrete actions only); None: whenever the env provides them"""
    log_std_init: float = -0.5
    """continuous actions: initial log standard deviation of the Gaussian policy"""
    comm: Literal["none", "commnet", "tarmac", "tarmac_broadcast", "dial"] = "none"
    """learned communication between the actors of a group, every step: commnet (mean of the others' features),
    tarmac (targeted attention), tarmac_broadcast (uniform attention), dial (discrete messages learned through
    a straight-through Gumbel-softmax, delivered in the same step); none: independent actors"""
    comm_rounds: int = 1
    """communication rounds per step (information travels this many hops between agents)"""
    dial_vocab_size: int = 2
    """dial: values per message digit (2: bits)"""
    dial_message_length: int = 1
    """dial: digits per message (B bits: dial_vocab_size 2, dial_message_length B)"""
    dial_temperature: float = 1.0
    """dial: Gumbel-softmax temperature of the straight-through gradient"""
    dial_flip_prob: float = 0.0
    """dial: probability that a digit arrives changed, per (receiver, sender) link"""
    dial_drop_prob: float = 0.0
    """dial: probability that a message is lost, per (receiver, sender) link"""
    images: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    """image observations: the CNN torso (fastmarl.config.images)"""

    def __post_init__(self):  # a saved PPOConfig rebuilt field by field (a self-play snapshot) has a dict here
        if isinstance(self.images, dict):
            self.images = config_from_dict(ImageEncoderConfig, self.images, "ppo.images.")


@dataclass
class TrainConfig:
    """A training run: ``fastmarl train --algo mappo --env simple_spread_v3``."""

    algo: Annotated[Literal["ippo", "mappo"], tyro.conf.Suppress] = "mappo"
    """ippo: each critic sees its agent's observation; mappo: a centralized critic on the global state"""
    env: str = "simple_spread_v3"
    """env id (see `fastmarl envs`), or a PettingZoo env module via from_pettingzoo, e.g. pz:mpe2.simple_spread_v3"""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """env keyword arguments, e.g. `--env-kwargs N=3 local_ratio=0.5`"""
    total_steps: StepCount = 2_000_000
    """env steps to train for (one step of one env, all agents acting); e.g. 2e6"""
    num_envs: int = 200
    """parallel envs in the batched training env (left at 200 on an env with image observations: 8,
    fastmarl.config.images.IMAGE_DEFAULTS)"""
    seed: int = 0
    """seed of env, network init and action sampling"""
    device: str = "cpu"
    """torch device (cpu, cuda, ...)"""
    name: str | None = None
    """run name; the run directory is runs_dir/name (default: env__algo__seed__time)"""
    runs_dir: str | None = "runs"
    """parent folder of run directories (None: write no files; the result holds the metrics)"""
    log_interval: StepCount = 0
    """env steps between rows of training metrics (0: one row per iteration)"""
    eval_interval: StepCount = 250_000
    """env steps between evaluations (0: only at the end)"""
    eval_episodes: int = 100
    """episodes per evaluation (deterministic and stochastic each)"""
    checkpoint_interval: StepCount = 500_000
    """env steps between checkpoints (0: only at the end)"""
    keep_checkpoints: int = 3
    """checkpoints kept on disk (oldest deleted first)"""
    gif: bool = True
    """render a GIF of a deterministic evaluation episode at the end"""
    tensorboard: bool = True
    """write TensorBoard events next to metrics.csv"""
    progress: bool = True
    """show a progress bar"""
    threads: int | None = None
    """torch CPU threads (None: torch's default)"""
    env_backend: EnvBackend = "inprocess"
    """where a pz: env's copies are stepped: inprocess (a loop in this process), process (--env-workers
    subprocesses on this machine) or ray (--env-workers Ray actors; pip install 'fastmarl[ray]'); same results"""
    env_workers: int | None = None
    """workers of --env-backend process or ray (None: one per CPU core, at most num_envs)"""
    message_bits: int = 0
    """add a broadcast channel of this many bits per agent to the env (fastmarl.envs.comm_wrappers): each
    discrete action becomes a (move, message) pair, observations get the others' last messages; 0: none"""
    comm_range: float | None = None
    """communication range (MPE envs), one radius for every channel that is on: with --message-bits, a message
    reaches only agents within this distance of its speaker (when it spoke); with --comm (ppo.comm), an actor hears
    only the actors of its group within this distance (itself included), in acting, training and evaluation alike;
    None: all-to-all. Needs --message-bits > 0 or --comm other than none"""
    message_flip_prob: float = 0.0
    """channel noise: probability that a bit arrives flipped, per (receiver, sender) link"""
    message_drop_prob: float = 0.0
    """channel loss: probability that a message is lost, per (receiver, sender) link"""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO hyper-parameters"""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (e.g. a run's config.json); unknown keys are errors."""
        return config_from_dict(cls, d)


# -- validation -------------------------------------------------------------

@dataclass(frozen=True)
class Derived:
    """Sizes computed once from a validated config and env spec."""

    steps_per_iteration: int  # num_envs * num_steps env steps
    num_iterations: int  # ceil(total_steps / steps_per_iteration)
    envs_per_minibatch: int  # recurrent: whole env sequences per minibatch
    samples_per_minibatch: int  # feed-forward: (t, env) samples per minibatch
    action_masks: dict[str, bool]  # group -> use the env's action masks


DIAL_FIELDS = ("dial_vocab_size", "dial_message_length", "dial_temperature", "dial_flip_prob", "dial_drop_prob")


def _check_dial(p: PPOConfig) -> None:
    if p.comm != "dial":
        changed = [f"ppo.{k}" for k in DIAL_FIELDS if getattr(p, k) != getattr(PPOConfig, k)]
        if changed:
            raise ConfigError(f"{', '.join(changed)} configure the DIAL channel, but ppo.comm={p.comm!r}; use "
                              "ppo.comm='dial' (or leave them at their defaults)", (*changed, "ppo.comm"))
        return
    check_int("ppo.dial_vocab_size", p.dial_vocab_size, 2)
    check_int("ppo.dial_message_length", p.dial_message_length, 1)
    check_positive("ppo.dial_temperature", p.dial_temperature)
    for name in ("dial_flip_prob", "dial_drop_prob"):
        check_unit(f"ppo.{name}", getattr(p, name), "is a probability in [0, 1]")


def _check_ppo_memory(cfg: TrainConfig, spec: EnvSpec, centralized: bool, cnn: dict[str, bool]) -> None:
    """A lower bound of a PPO run's memory: the rollout's observations (as the env gives them: one
    byte per pixel for ``uint8`` frames) and global states (float32, where a critic reads them), one
    minibatch's critic inputs (each agent's copy, and its gradient) and the first layers' weights with
    their Adam moments and gradients; for a group with the CNN torso also the env's frame buffers,
    one minibatch's frames and the CNN's activations (float32, with their gradients)."""
    p, f = cfg.ppo, 4
    groups = list(spec.groups.values())
    uses_state = centralized and not all(cnn.values())
    F = p.images.cnn_features
    per_step = (sum(g.num_agents * g.obs_dim * obs_itemsize(g) for g in groups)
                + (f * spec.state_dim if uses_state else 0))
    critic_in = {g.name: (F * (1 + p.critic_obs) if centralized else F) if cnn[g.name] else
                 ((spec.state_dim + (g.obs_dim if p.critic_obs else 0)) if centralized else g.obs_dim)
                 for g in groups}
    minibatch = sum(2 * f * g.num_agents * critic_in[g.name] for g in groups)
    frames = [g for g in groups if cnn[g.name]]
    minibatch += sum(g.num_agents * (g.obs_dim * obs_itemsize(g) + 2 * f * encoder_activation_floats(p.images, g))
                     for g in frames)
    env_buffers = sum(3 * g.num_agents * g.obs_dim * obs_itemsize(g) for g in frames)  # the env's obs and copies
    per_env = p.num_steps * (per_step + minibatch // p.num_minibatches) + env_buffers
    nets = 1 if p.share_params else max(g.num_agents for g in groups)
    first_in = {g.name: (F if cnn[g.name] else g.obs_dim) + critic_in[g.name] for g in groups}
    weights = f * 4 * nets * p.hidden_size * sum(first_in.values())
    weights += f * 4 * sum(encoder_parameters(p.images, g) for g in frames)  # with gradients and Adam moments
    advice = (", or --algo ippo (its critics see each agent's observation, not the global state)"
              if uses_state else "")
    note = None
    if frames:
        note = (f"; frames of {[g.name for g in frames]} are stored as uint8 where the env gives uint8 "
                f"({ {g.name: g.obs_dim * obs_itemsize(g) for g in frames} } bytes per agent per step) "
                "and encoded by the CNN torso")
    check_memory(f"{cfg.algo} on {spec.env_id}", per_env * cfg.num_envs + weights, per_env, cfg, spec, advice,
                 note)


def resolve(cfg: TrainConfig, spec: EnvSpec, family: str = "ppo") -> Derived:
    """Validate ``cfg`` against ``spec``; return derived sizes. Raises ConfigError. ``family``: the
    algorithm's config family (HAPPO's validation, :func:`fastmarl.config.happo.resolve_happo`, adds its own
    checks to these)."""
    p = cfg.ppo
    algo = algo_spec(cfg.algo, family)
    check_run(cfg)
    for name, low in [("num_steps", 1), ("num_epochs", 1), ("num_minibatches", 1), ("hidden_size", 1),
                      ("num_layers", 0), ("comm_rounds", 1)]:
        check_int(f"ppo.{name}", getattr(p, name), low)
    check_int("message_bits", cfg.message_bits, 0)
    if not cfg.message_bits and (cfg.message_flip_prob or cfg.message_drop_prob):
        raise ConfigError("message_flip_prob / message_drop_prob describe the env's message channel, "
                          "which is off; add one with message_bits 1 (or more)",
                          ("message_flip_prob", "message_drop_prob", "message_bits"))
    if cfg.comm_range is not None:
        check_positive("comm_range", cfg.comm_range, "must be a positive distance or None")
        if not cfg.message_bits and p.comm == "none":
            raise ConfigError("comm_range limits communication, but no channel is on; add the env's message "
                              "channel (--message-bits 1) and/or learned communication (--comm commnet, tarmac, "
                              "tarmac_broadcast or dial)")
    for name in ("message_flip_prob", "message_drop_prob"):
        check_unit(name, getattr(cfg, name), "is a probability in [0, 1]")
    for name in ("lr", "clip_coef", "max_grad_norm"):
        check_positive(f"ppo.{name}", getattr(p, name))
    for name in ("gamma", "gae_lambda"):
        check_unit(f"ppo.{name}", getattr(p, name))
    for name in ("vf_coef", "ent_coef"):
        check_at_least(f"ppo.{name}", getattr(p, name), 0.0)
    check_finite("ppo.log_std_init", p.log_std_init)

    cnn = check_images(p.images, spec)
    if algo.needs_state and spec.state_dim == 0 and not all(cnn.values()):
        raise ConfigError(f"{cfg.algo} needs a global state for its centralized critic, but {spec.env_id} has "
                          "state_dim 0 (no state()); use --algo ippo, whose critics see each agent's observation")
    _check_dial(p)
    if p.comm != "none" and all(g.num_agents == 1 for g in spec.groups.values()):
        raise ConfigError(f"ppo.comm={p.comm!r} lets the agents of a group talk, but every group of {spec.env_id} "
                          "has a single agent; use --comm none")
    masks: dict[str, bool] = {}
    for g in spec.groups.values():
        if not g.discrete and not algo.continuous:
            raise ConfigError(f"{cfg.algo} does not support continuous actions (group {g.name!r})")
        if g.discrete and not algo.discrete:
            raise ConfigError(f"{cfg.algo} does not support discrete actions (group {g.name!r})")
        if p.action_masks and not g.discrete:
            raise ConfigError(f"action masks apply to discrete actions only, but group {g.name!r} has continuous "
                              f"(Box) actions; leave --action-masks unset (auto)")
        if p.action_masks and not spec.has_action_mask:
            raise ConfigError(f"--action-masks was requested but {spec.env_id} provides no action masks; "
                              "leave action_masks at None (auto)")
        masks[g.name] = bool(g.discrete and spec.has_action_mask and p.action_masks is not False)

    steps_per_iteration = cfg.num_envs * p.num_steps
    if cfg.total_steps < steps_per_iteration:
        raise ConfigError(f"total_steps={cfg.total_steps} is less than one iteration (num_envs * num_steps = "
                          f"{cfg.num_envs} * {p.num_steps} = {steps_per_iteration}); raise --total-steps or lower "
                          "--num-envs / --num-steps")
    if p.recurrent:
        if cfg.num_envs % p.num_minibatches:
            raise ConfigError(f"recurrent PPO splits minibatches by env: num_envs={cfg.num_envs} must be divisible "
                              f"by num_minibatches={p.num_minibatches}")
    elif steps_per_iteration % p.num_minibatches:
        raise ConfigError(f"num_envs * num_steps = {steps_per_iteration} must be divisible by "
                          f"num_minibatches={p.num_minibatches}")
    _check_ppo_memory(cfg, spec, algo.centralized_critic, cnn)
    num_iterations = -(-cfg.total_steps // steps_per_iteration)
    return Derived(
        steps_per_iteration=steps_per_iteration,
        num_iterations=num_iterations,
        envs_per_minibatch=cfg.num_envs // p.num_minibatches,
        samples_per_minibatch=steps_per_iteration // p.num_minibatches,
        action_masks=masks,
    )
