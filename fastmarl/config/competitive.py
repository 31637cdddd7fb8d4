"""The competitive / self-play config (:mod:`fastmarl.train.selfplay`): ``CompetitiveConfig`` and
the per-group ``GroupSetup``, with ``--groups NAME=MODE[,key=value]`` parsing.

Unknown keys (of the config, of a group's setup, of a group's PPO overrides) are
:class:`~fastmarl.config.base.ConfigError` s naming the closest valid key, as everywhere.
``check_competitive`` checks what needs no env; ``fastmarl.train.selfplay.validate`` checks
the rest against the env (groups, scripted names, lockstep ``num_steps``).
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import tyro

from fastmarl.config.algorithms import ALGORITHMS
from fastmarl.config.base import (
    ConfigError,
    EnvKwargs,
    StepCount,
    check_int,
    config_from_dict,
    config_key_kind,
)
from fastmarl.config.ppo import PPOConfig
from fastmarl.envs.api import check_known_keys

PPO_ALGOS = tuple(n for n, a in ALGORITHMS.items() if a.family == "ppo")  # the learners of a group
MODES = ("train", "frozen", "scripted", "random")
SCHEDULES = ("alternate", "simultaneous")
OPPONENT_SAMPLING = ("latest", "uniform", "prioritised")


@dataclass
class GroupSetup:
    """How one group acts and learns."""

    mode: Literal["train", "frozen", "scripted", "random"] = "train"
    """train: its own PPO learner; frozen: a saved policy; scripted: a hand-written policy; random: uniform"""
    algo: Literal["mappo", "ippo"] = "mappo"
    """the learner's algorithm (mode train)"""
    ppo: dict[str, Any] = field(default_factory=dict)
    """overrides of the run's PPO settings for this group's learner, e.g. {"lr": 1e-3} (mode train)"""
    checkpoint: str | None = None
    """mode frozen: a pool snapshot folder, a `fastmarl train` run directory or one of its checkpoint folders"""
    scripted: str | None = None
    """mode scripted: "noop", "baseline" (the env module's baseline_policy) or a name from register_scripted"""

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> "GroupSetup":
        """Unknown keys are errors (``where``: the dotted prefix the message names, e.g. ``groups.agent.``)."""
        return config_from_dict(cls, d, where)


def parse_groups(items: list[str] | tuple[str, ...]) -> dict[str, GroupSetup]:
    """``["adversary=mappo", "agent=ippo,lr=0.001", "agent=frozen:runs/x"]`` -> group setups:
    ``NAME=MODE[,key=value...]`` with MODE ``mappo``/``ippo`` (trained; the key=value pairs
    override that group's PPO settings), ``frozen:PATH``, ``scripted:NAME`` or ``random``.
    Raises ValueError on malformed items."""
    out: dict[str, GroupSetup] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        if not sep or not name or not rest:
            raise ValueError(f"--groups takes NAME=MODE items (e.g. agent=ippo, agent=frozen:runs/x), got {item!r}")
        if name in out:
            raise ValueError(f"--groups: group {name!r} is given twice")
        head, *pairs = rest.split(",")
        mode, _, arg = head.partition(":")
        overrides: dict[str, Any] = {}
        for pair in pairs:
            k, eq, v = pair.partition("=")
            if not eq or not k:
                raise ValueError(f"--groups {item!r}: PPO overrides are key=value pairs after the mode, got {pair!r}")
            try:
                overrides[k] = ast.literal_eval(v)
            except (ValueError, SyntaxError):
                overrides[k] = v
        if mode in PPO_ALGOS:
            out[name] = GroupSetup(mode="train", algo=mode, ppo=overrides)
        elif mode in ("frozen", "scripted", "random"):
            if overrides:
                raise ValueError(f"--groups {item!r}: PPO overrides apply to trained groups (mappo/ippo) only")
            if mode == "random" and arg:
                raise ValueError(f"--groups {item!r}: mode random takes no argument")
            out[name] = GroupSetup(mode=mode, checkpoint=(arg or None) if mode == "frozen" else None,
                                   scripted=(arg or None) if mode == "scripted" else None)
        else:
            raise ValueError(f"--groups {item!r}: unknown mode {mode!r}; use mappo, ippo, frozen:PATH, "
                             "scripted:NAME or random")
    return out


def format_group(name: str, s: GroupSetup) -> str:
    """The ``--groups`` item of one setup (the inverse of ``parse_groups``)."""
    if s.mode == "train":
        return ",".join([f"{name}={s.algo}"] + [f"{k}={v!r}" for k, v in s.ppo.items()])
    arg = s.checkpoint if s.mode == "frozen" else s.scripted if s.mode == "scripted" else None
    return f"{name}={s.mode}" + (f":{arg}" if arg else "")


GroupSetups = Annotated[dict[str, GroupSetup], tyro.constructors.PrimitiveConstructorSpec(
    nargs="*", metavar="NAME=MODE[,key=value]", instance_from_str=parse_groups,
    is_instance=lambda x: isinstance(x, dict),
    str_from_instance=lambda d: [format_group(k, v) for k, v in d.items()])]


@dataclass
class CompetitiveConfig:
    """Competitive / mixed training with self-play: ``fastmarl selfplay --env simple_tag_v3``."""

    env: str = "simple_tag_v3"
    """env id (see `fastmarl envs`)"""
    env_kwargs: EnvKwargs = field(default_factory=dict)
    """env keyword arguments, e.g. `--env-kwargs num_good=2`"""
    groups: GroupSetups = field(default_factory=dict)
    """per-group setup, NAME=MODE[,key=value]: mappo / ippo (trained, with PPO overrides), frozen:PATH,
    scripted:NAME (noop, baseline, ...) or random; unnamed groups train with mappo"""
    total_steps: StepCount = 1_000_000
    """env steps to train for (all groups act in every step)"""
    num_envs: int = 200
    """parallel envs"""
    seed: int = 0
    """seed of the env, network initialisation and sampling"""
    device: str = "cpu"
    """torch device"""
    schedule: Literal["alternate", "simultaneous"] = "alternate"
    """alternate: one trained group learns per phase against pool snapshots of the others; simultaneous: all
    trained groups learn together against each other's current policies"""
    phase_steps: StepCount = 100_000
    """alternate: env steps per phase"""
    snapshot_interval: StepCount = 100_000
    """env steps between pool snapshots of the groups that learned (0: only at step 0, phase ends and the end)"""
    pool_size: int = 10
    """opponents are sampled from the newest pool_size snapshots of their group"""
    opponent_sampling: Literal["latest", "uniform", "prioritised"] = "uniform"
    """how an opponent snapshot is drawn at each iteration (alternate schedule)"""
    eval_interval: StepCount = 100_000
    """env steps between evaluations (0: only at the end)"""
    eval_episodes: int = 100
    """episodes per evaluation"""
    checkpoint_interval: StepCount = 500_000
    """env steps between checkpoints (0: only at the end); a run resumes from its latest"""
    keep_checkpoints: int = 3
    """checkpoints kept on disk (oldest deleted first)"""
    matrix_episodes: int = 100
    """episodes per cell of the snapshot evaluation matrix computed at the end (0: no matrix)"""
    matrix_max_snapshots: int = 12
    """snapshots per side in the matrix (evenly spaced, first and last always in)"""
    exploitability_steps: StepCount = 0
    """env steps of best-response training against each trained group's final snapshot at the end (0: skip)"""
    name: str | None = None
    """run name; the run directory is runs_dir/name (default: env__selfplay__seed__time)"""
    runs_dir: str = "runs"
    """parent folder of run directories"""
    threads: int | None = None
    """torch CPU threads (None: torch's default)"""
    progress: bool = True
    """show a progress bar and evaluation lines"""
    plots: bool = True
    """draw returns.png and ratings.png into the run directory"""
    tensorboard: bool = False
    """write TensorBoard events next to metrics.csv"""
    gif: bool = False
    """render a GIF of an episode of the final policies at the end"""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO settings shared by the trained groups (a group's `ppo` overrides change them for that group)"""

    algo = "selfplay"  # not a field: the run's name and checkpoint manifests call competitive training this

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "competitive", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CompetitiveConfig":
        """Build from a dict (e.g. a run's config.json); unknown keys, here, in ``ppo``, in a group's
        setup or its PPO overrides, are errors naming the closest valid key."""
        if not isinstance(d, dict):
            raise ConfigError(f"CompetitiveConfig: expected a mapping, got {type(d).__name__}")
        d = {k: v for k, v in d.items() if k != "kind"}
        groups = d.pop("groups", {})
        if not isinstance(groups, dict):
            raise ConfigError(f"groups: expected a mapping group -> setup, got {type(groups).__name__}")
        cfg = config_from_dict(cls, d)
        cfg.groups = {g: s if isinstance(s, GroupSetup) else GroupSetup.from_dict(s, f"groups.{g}.")
                      for g, s in groups.items()}
        for g, s in cfg.groups.items():
            check_ppo_overrides(g, s.ppo)
        return cfg


def check_ppo_overrides(group: str, overrides: Any) -> None:
    """A group's PPO overrides name PPOConfig fields (ConfigError naming the closest otherwise)."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"groups.{group}.ppo: expected a mapping of PPO settings, got {type(overrides).__name__}")
    check_known_keys(overrides, [f.name for f in dataclasses.fields(PPOConfig)],
                     config_key_kind(PPOConfig, f"groups.{group}.ppo"), ConfigError)


def check_competitive(cfg: CompetitiveConfig) -> None:
    """The checks that need no env: counts, intervals, the schedule and sampling names, every
    group's setup on its own. ConfigError naming the setting."""
    for name, value, low in [("num_envs", cfg.num_envs, 1), ("total_steps", cfg.total_steps, 1),
                             ("phase_steps", cfg.phase_steps, 1), ("snapshot_interval", cfg.snapshot_interval, 0),
                             ("pool_size", cfg.pool_size, 1), ("eval_interval", cfg.eval_interval, 0),
                             ("eval_episodes", cfg.eval_episodes, 1), ("matrix_episodes", cfg.matrix_episodes, 0),
                             ("matrix_max_snapshots", cfg.matrix_max_snapshots, 2),
                             ("exploitability_steps", cfg.exploitability_steps, 0),
                             ("checkpoint_interval", cfg.checkpoint_interval, 0),
                             ("keep_checkpoints", cfg.keep_checkpoints, 1)]:
        check_int(name, value, low)
    for name, value, allowed in [("schedule", cfg.schedule, SCHEDULES),
                                 ("opponent_sampling", cfg.opponent_sampling, OPPONENT_SAMPLING)]:
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {list(allowed)}, got {value!r}", (name,))
    if cfg.threads is not None:
        check_int("threads", cfg.threads, 1)
    for g, s in cfg.groups.items():
        if not isinstance(s, GroupSetup):
            raise ConfigError(f"groups.{g}: expected a GroupSetup, got {type(s).__name__}")
        if s.mode not in MODES:
            raise ConfigError(f"groups.{g}.mode must be one of {list(MODES)}, got {s.mode!r}")
        if s.mode == "train" and s.algo not in PPO_ALGOS:
            raise ConfigError(f"groups.{g}.algo must be one of {sorted(PPO_ALGOS)}, got {s.algo!r}")
        if s.mode != "train" and s.ppo:
            raise ConfigError(f"groups.{g}.ppo overrides apply to trained groups only (mode is {s.mode!r}); a frozen "
                              "policy's network settings come from its checkpoint")
        if (s.checkpoint is not None) != (s.mode == "frozen"):
            raise ConfigError(f"groups.{g}: a checkpoint is needed by, and only by, mode 'frozen' (mode {s.mode!r}, "
                              f"checkpoint {s.checkpoint!r})")
        if (s.scripted is not None) != (s.mode == "scripted"):
            raise ConfigError(f"groups.{g}: a scripted policy name is needed by, and only by, mode 'scripted' "
                              f"(mode {s.mode!r}, scripted {s.scripted!r})")
        if s.mode == "train":
            check_ppo_overrides(g, s.ppo)


# settings a resumed competitive run may change; everything else must match the saved config
RESUMABLE_COMPETITIVE = {"total_steps", "eval_interval", "eval_episodes", "checkpoint_interval", "keep_checkpoints",
                         "gif", "tensorboard", "progress", "threads", "runs_dir", "name", "plots", "matrix_episodes",
                         "matrix_max_snapshots", "exploitability_steps"}
