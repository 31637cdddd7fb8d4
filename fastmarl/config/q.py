"""The Q-learning family's config (IQL, VDN, QMIX) and its validation.

``QConfig`` is a plain dataclass: ``fastmarl train --algo qmix`` parses it with tyro
(one flag per field, the docstring under each field is its help), Python users
build it directly. ``validate_q_config`` checks it against the env's spec and
resolves the settings left ``None`` to the algorithm's defaults (``ALGO_DEFAULTS``)
in a :class:`QDerived`; every invalid combination is a ConfigError that says what
to do instead.
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
    check_int,
    check_positive,
    check_run,
    check_unit,
    config_from_dict,
)
from fastmarl.config.images import refuse_images
from fastmarl.envs.api import EnvSpec, check_known_keys


@dataclass
class QConfig:
    """IQL / VDN / QMIX: ``fastmarl.train(QConfig(algo="qmix", env="simple_spread_v3"))``."""

    algo: Annotated[Literal["iql", "vdn", "qmix"], tyro.conf.Suppress] = "qmix"
    """iql: independent learners; vdn: Q_tot = sum of utilities; qmix: state-conditioned monotonic mixer"""
    env: str = "simple_spread_v3"
    """env id (see `fastmarl envs`); every action space must be discrete"""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """env keyword arguments, e.g. {"N": 3} (`--env-kwargs N=3` on the command line)"""
    total_steps: StepCount = 2_000_000
    """env steps to train for (one step of one env); e.g. 2e6"""
    num_envs: int = 8
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

    buffer_size: int = 5000
    """episodes (or chunks of max_seq_len steps) kept in the replay buffer"""
    batch_size: int = 32
    """episodes per gradient update"""
    max_seq_len: int | None = None
    """longest stored sequence; None: the env's max_episode_steps (longer episodes are cut into chunks)"""
    learning_starts: int = 32
    """episodes in the buffer before the first update (at least batch_size)"""
    update_interval: int = 200
    """env steps (all envs together) per gradient update"""

    lr: float = 5e-4
    """learning rate"""
    optimizer: Literal["adam", "rmsprop"] = "adam"
    """optimizer (PyMARL used RMSprop(alpha=0.99, eps=1e-5), EPyMARL Adam)"""
    gamma: float = 0.99
    """discount factor"""
    grad_clip: float = 10.0
    """gradient norm clipping per group"""
    double_q: bool = True
    """double Q-learning: the online network picks the bootstrap action, the target network values it"""
    td_lambda: float | None = None
    """TD(lambda) targets over the stored sequence, from the target network's values (0: one-step TD);
    None: the algo's default (ALGO_DEFAULTS: 0.6 for qmix, as pymarl2; 0 for iql/vdn)"""
    target_update: Literal["hard", "soft"] = "hard"
    """hard: copy every target_update_interval updates; soft: Polyak average with tau every update"""
    target_update_interval: int = 200
    """gradient updates between hard target copies"""
    tau: float = 0.005
    """soft target update rate: target <- tau * online + (1 - tau) * target"""
    team_reward: Literal["mean", "sum"] = "mean"
    """VDN/QMIX: the team reward of a group is the mean (or sum) of its agents' rewards"""
    mixer_groups: list[str] | None = None
    """VDN/QMIX: the groups whose agents' utilities are mixed (one mixer per group, trained on the group's team
    reward); the other groups learn independently, as IQL. None: every group, on a cooperative env; on a
    competitive env (opposing teams, e.g. simple_tag's adversary and agent) they must be named"""
    standardise_rewards: bool | None = None
    """train on (r - mean) / std with running statistics of the rewards (EPyMARL's option); the shift changes
    the optimal policy where episodes can end early. None: the algo's default (ALGO_DEFAULTS: on for qmix,
    whose mixer otherwise overestimates on simple_spread's negative rewards; off for iql/vdn)"""

    epsilon_start: float = 1.0
    """exploration rate at the start"""
    epsilon_end: float = 0.05
    """exploration rate after the anneal"""
    epsilon_anneal_steps: int = 50_000
    """env steps over which epsilon decays linearly"""

    recurrent: bool = True
    """GRU agents trained over whole stored episodes (False: feed-forward on the observation)"""
    hidden_size: int = 64
    """width of the agent network's hidden layers (and GRU)"""
    num_layers: int = 1
    """hidden ReLU layers before the GRU (or before the output when feed-forward)"""
    share_params: bool = True
    """one utility network per group shared by its agents (False: one per agent, batched)"""
    agent_id: bool = True
    """append a one-hot agent index to the network input (only with shared parameters)"""
    comm: Literal["none", "commnet", "tarmac", "tarmac_broadcast"] = "none"
    """learned communication between the agents of a group, every step, between the MLP and the GRU/Q head:
    commnet (mean of the others' features), tarmac (targeted attention), tarmac_broadcast (uniform attention);
    all-to-all (no range limit); none: independent utilities"""
    comm_rounds: int = 1
    """communication rounds per step (information travels this many hops between agents)"""
    action_masks: bool | None = None
    """use the env's action masks; None: whenever the env provides them"""
    mixer_embed: int = 32
    """QMIX: width of the mixing network's hidden layer"""
    hypernet_layers: int = 2
    """QMIX: layers of the hypernetworks producing the mixing weights (1 or 2)"""
    hypernet_embed: int = 64
    """QMIX: hidden width of 2-layer hypernetworks"""
    state_clip: float | None = None
    """QMIX: feed the hypernetworks the global state normalised per feature (running mean and std of the
    replayed states) and clipped to +-state_clip; 0 turns this off (the raw state). Unbounded raw features
    (MPE positions once agents wander off) let the hypernetworks extrapolate to ever larger mixing weights,
    and the greedy policy chases them. None: the algo's default (ALGO_DEFAULTS: 2.0 for qmix)"""

    log_interval: int = 10_000
    """env steps between rows of training metrics"""
    eval_interval: int = 0
    """env steps between greedy evaluations (0: only at the end)"""
    eval_episodes: int = 32
    """episodes per evaluation (greedy actions)"""
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
    """render a GIF of a greedy evaluation episode at the end (with runs_dir)"""
    progress: bool = True
    """show a progress bar"""
    checkpoint_replay: bool = True
    """save the replay buffer with every checkpoint (what an exact resume needs; False: small checkpoints that
    can be evaluated and rendered but not resumed)"""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "QConfig":
        """Build from a dict (e.g. a run's config.json); unknown keys are errors."""
        return config_from_dict(cls, d)


COMM_KINDS = ("none", "commnet", "tarmac", "tarmac_broadcast")

@dataclass(frozen=True)
class QDerived:
    max_seq_len: int
    action_masks: dict[str, bool]
    td_lambda: float = 0.0
    standardise_rewards: bool = False
    state_clip: float = 0.0  # 0: the mixer sees the raw state
    mixed_groups: tuple[str, ...] = ()  # the groups with a mixer (VDN/QMIX); the others are IQL


# per-algo values of the settings left None in QConfig. QMIX on simple_spread_v3 (N=3), 1M env steps, seed 0,
# everything else default: one-step targets on raw rewards end at a greedy return of -23.8 with Q_tot drifting
# to +8 while every reward is negative (+109 by 2M, return -27.2); TD(0.6) alone: -23.8, Q_tot +22; TD(0.6) with
# standardised rewards: -18.2 and still improving. Over 2M steps and 5 seeds that reached -17 in 2 seeds only: in
# the others the mixer's weights and Q_tot still blew up after ~1M steps, because the hypernetworks read the raw
# state, whose positions are unbounded, and extrapolated to ever larger weights where agents had wandered off.
# state_clip 2 (normalised, clipped state) stops that (docs/credit_assignment.md)
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    "iql": {"td_lambda": 0.0, "standardise_rewards": False, "state_clip": 0.0},
    "vdn": {"td_lambda": 0.0, "standardise_rewards": False, "state_clip": 0.0},
    "qmix": {"td_lambda": 0.6, "standardise_rewards": True, "state_clip": 2.0},
}


def validate_q_config(cfg: QConfig, spec: EnvSpec) -> QDerived:
    """Check ``cfg`` against the env ``spec``; ConfigError says what to change."""
    algo = algo_spec(cfg.algo, "q")
    refuse_images(cfg.algo, spec)
    check_run(cfg, log_interval_low=1)
    for name, low in [("buffer_size", 1), ("batch_size", 1), ("learning_starts", 0), ("update_interval", 1),
                      ("target_update_interval", 1), ("epsilon_anneal_steps", 0), ("hidden_size", 1),
                      ("num_layers", 0), ("mixer_embed", 1), ("hypernet_embed", 1), ("comm_rounds", 1)]:
        check_int(name, getattr(cfg, name), low)
    if cfg.hypernet_layers not in (1, 2):
        raise ConfigError(f"hypernet_layers must be 1 or 2, got {cfg.hypernet_layers!r}", ("hypernet_layers",))
    for name in ("gamma", "epsilon_start", "epsilon_end", "td_lambda"):
        if getattr(cfg, name) is not None:
            check_unit(name, getattr(cfg, name))
    for name in ("lr", "grad_clip"):
        check_positive(name, getattr(cfg, name))
    if cfg.state_clip is not None:
        check_at_least("state_clip", cfg.state_clip, 0.0)  # 0: the raw state; None: the algo's default
    if not (isinstance(cfg.tau, (int, float)) and 0.0 < cfg.tau <= 1.0):  # also with hard updates: a typo is a typo
        raise ConfigError(f"tau must be in (0, 1] (the soft target update rate), got {cfg.tau!r}", ("tau",))
    if cfg.target_update not in ("hard", "soft") or cfg.optimizer not in ("adam", "rmsprop") or \
            cfg.team_reward not in ("mean", "sum"):
        raise ConfigError("target_update must be 'hard' or 'soft', optimizer 'adam' or 'rmsprop', team_reward "
                          "'mean' or 'sum'")
    if cfg.buffer_size < cfg.batch_size:
        raise ConfigError(f"buffer_size ({cfg.buffer_size}) must hold at least one batch (batch_size "
                          f"{cfg.batch_size} episodes)", ("buffer_size", "batch_size"))
    for g in spec.groups.values():
        if not g.discrete:
            raise ConfigError(f"{cfg.algo} needs discrete actions, but group {g.name!r} of {spec.env_id} has "
                              f"{g.action_space}; create the env with discrete actions (env_kwargs "
                              "continuous_actions=False) or use ippo/mappo")
    if cfg.comm not in COMM_KINDS:
        raise ConfigError(f"comm must be one of {list(COMM_KINDS)}, got {cfg.comm!r}")
    if cfg.comm != "none" and all(g.num_agents == 1 for g in spec.groups.values()):
        raise ConfigError(f"comm={cfg.comm!r} lets the agents of a group talk, but every group of {spec.env_id} "
                          "has a single agent; use comm='none' (--comm none)")
    if algo.needs_state and spec.state_dim == 0:
        raise ConfigError(f"qmix conditions its mixer on the global state, but {spec.env_id} has no state() "
                          "(state_dim 0); use algo='vdn' (no state needed)")
    if cfg.action_masks and not spec.has_action_mask:
        raise ConfigError(f"action_masks=True but {spec.env_id} provides no action masks; leave it None (auto)")
    T = cfg.max_seq_len if cfg.max_seq_len is not None else spec.max_episode_steps
    if T is None:
        raise ConfigError(f"{spec.env_id} has no episode limit (max_episode_steps None): set max_seq_len to the "
                          "length of the stored sequences (longer episodes are cut into chunks)")
    if not isinstance(T, int) or T < 1:
        raise ConfigError(f"max_seq_len must be a positive int, got {T!r}", ("max_seq_len",))
    masks = {n: bool(spec.has_action_mask and cfg.action_masks is not False) for n in spec.groups}
    algo_default = ALGO_DEFAULTS[cfg.algo]
    lam = float(cfg.td_lambda if cfg.td_lambda is not None else algo_default["td_lambda"])
    std = bool(cfg.standardise_rewards if cfg.standardise_rewards is not None else algo_default["standardise_rewards"])
    clip = float(cfg.state_clip if cfg.state_clip is not None else algo_default["state_clip"])
    if not algo.needs_state:
        clip = 0.0  # only QMIX's mixer reads the state
    return QDerived(max_seq_len=T, action_masks=masks, td_lambda=lam, standardise_rewards=std, state_clip=clip,
                    mixed_groups=_mixed_groups(cfg, spec))


def _mixed_groups(cfg: QConfig, spec: EnvSpec) -> tuple[str, ...]:
    """The groups that get a mixer: ``mixer_groups``, or every group of a cooperative env. A
    competitive env needs them named: one mixer per group there trains each team on its own
    reward, which is a choice (e.g. a QMIX team against IQL opponents), not a default."""
    if cfg.algo == "iql":
        if cfg.mixer_groups is not None:
            raise ConfigError("mixer_groups names the groups that VDN/QMIX mix, but iql has no mixer; leave "
                              "mixer_groups unset, or use algo vdn or qmix", ("mixer_groups",))
        return ()
    if cfg.mixer_groups is None:
        if spec.competitive:
            teams = " vs ".join("+".join(t) for t in spec.team_groups)
            raise ConfigError(
                f"{cfg.algo} on {spec.env_id}: its groups are opposing teams ({teams}), and a mixer learns the joint "
                f"value of one team's reward; say which groups the mixer serves with mixer_groups (e.g. "
                f"{spec.team_groups[0][0]}: the other groups then learn independently, as IQL; naming every group "
                "mixes each team on its own reward), or use algo iql. Returns are reported per group",
                ("mixer_groups",))
        return tuple(spec.groups)
    if isinstance(cfg.mixer_groups, str) or not cfg.mixer_groups:
        raise ConfigError(f"mixer_groups must be a non-empty list of group names of {spec.env_id} "
                          f"({list(spec.groups)}), got {cfg.mixer_groups!r}", ("mixer_groups",))
    try:
        check_known_keys(cfg.mixer_groups, spec.groups, f"group of {spec.env_id} in mixer_groups", ConfigError)
    except ConfigError as e:
        raise ConfigError(str(e), ("mixer_groups",)) from None
    return tuple(g for g in spec.groups if g in cfg.mixer_groups)
