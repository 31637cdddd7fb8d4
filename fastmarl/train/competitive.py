"""Competitive and mixed training: one learner per group, self-play pools, Elo, exploitability.

Every group of the env gets a :class:`GroupSetup`: trained by its own PPO
learner (``algo`` ``"mappo"`` or ``"ippo"`` with its own hyper-parameters, e.g.
MAPPO predators vs IPPO prey), ``"frozen"`` (a saved policy that never changes),
``"scripted"`` (a hand-written policy: ``"noop"``, the env module's
``baseline_policy`` as ``"baseline"``, or one added with :func:`register_scripted`)
or ``"random"``. The learners share one batched env in lockstep (each samples
its own groups' actions, the env steps once with every group's actions, each
records its own groups' data), so they all learn from the same transitions.

Self-play (``schedule``):

- ``"alternate"`` (default): training proceeds in phases of ``phase_steps`` env
  steps; in each phase one trained group learns (in group order, cyclically)
  while every other trained group plays a *snapshot from its pool*, resampled at
  every iteration (``num_envs * num_steps`` env steps) with
  ``opponent_sampling``: ``"latest"`` (iterated best response), ``"uniform"``
  over the newest ``pool_size`` snapshots (fictitious-play-like), or
  ``"prioritised"``, which favours the snapshots the learner currently does worst
  against (weights ``exp(-(R_i - min R) / std R)`` of the learner's running mean
  return ``R_i`` against snapshot ``i``; unseen snapshots count as the worst).
- ``"simultaneous"``: every trained group learns at every iteration against
  the others' current policies; the pool only feeds the evaluation.

Snapshots of a trained group are saved (safetensors, atomic, checksummed: see
:mod:`fastmarl.train.checkpoint`) at step 0, every ``snapshot_interval`` env
steps, at the end of each of its phases and at the end of training; only
groups whose weights changed since their last snapshot are saved.

Evaluation matrix and ratings (:func:`evaluate_matrix`): every snapshot of side A
plays every snapshot of side B (plus ``random``, and ``baseline`` where the env
has one) for ``episodes`` paired episodes (the same start states in every cell).
Returns are not wins, so the *score* of A's entry ``a`` against B's entry ``b``
is defined from A's advantage ``x = return_A - return_B`` (per-agent returns of
one episode): for every episode seed, the cells of the matrix are ranked by
``x`` and the cell's percentile rank (0: worst cell for A, 1: best; ties count
half) is its score for that seed; the score is the mean over seeds and B's score
is ``1 - score``. Ratings are the maximum-likelihood logistic Elo
(Bradley-Terry, ``P(a beats b) = 1 / (1 + 10^((R_b - R_a) / 400))``) fitted to
these scores with ``episodes`` games per cell and a weak prior (``prior_games``
virtual draws per player against a reference), reported with mean 1500. Ratings
compare entries *within* a side; the offset between sides is arbitrary (roles
are asymmetric). :func:`elo_update` is the classic sequential update.

Exploitability (:func:`exploitability`): freeze one group's final snapshot,
train fresh learners for the other trained groups against it for ``steps`` env
steps (a best response), and report how much more they earn against it than the
self-play run's final snapshots do (``gap``, per-agent return; > 0 means the
frozen policy is exploitable beyond what self-play found).

A run directory (``runs/<name>/``): ``config.json`` (this config, ``"kind":
"competitive"``), ``meta.json`` (versions, git revision, command line),
``metrics.csv`` (one row per iteration: which group learned, the sampled
opponents, per-group returns and losses), ``eval.csv`` (per-group returns of the
current policies, and of each trained group against random opponents),
``pool/<group>/step_<step>/`` (snapshots), ``matrix.csv``, ``ratings.csv``,
``ratings.png``, ``exploitability.json`` and ``exploitability/`` (the best
response runs). Resuming a competitive run is not supported (a ConfigError says so).

Limits: learners are PPO-family only (a value-based learner keeps whole episodes
in a replay buffer, which the phases of the alternate schedule would cut); the
learners of one run share ``num_envs`` and ``ppo.num_steps`` (lockstep); frozen,
pool and scripted policies act stochastically (sampled, as they were trained)
and a recurrent one restarts its hidden state at every iteration.

Command line::

    fastmarl selfplay --env simple_tag_v3 --groups adversary=mappo agent=ippo,lr=0.001 \\
        --total-steps 2e6 --threads 1 --exploitability-steps 5e5

``--groups`` takes ``NAME=MODE[,key=value...]`` with MODE ``mappo``/``ippo``
(trained; the key=value pairs override that group's PPO settings),
``frozen:PATH`` (a pool snapshot, a ``fastmarl train`` run directory or one of
its checkpoints), ``scripted:NAME`` or ``random``; unnamed groups train with MAPPO.
Python: ``train(CompetitiveConfig(env="simple_tag_v3", groups={"agent":
GroupSetup(algo="ippo")}))``, then ``evaluate_matrix(run_dir)``, ``exploitability(run_dir, "agent", 500_000)``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import math
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import numpy as np
import torch
import tyro
from torch import Tensor

from fastmarl.algos.ppo import PPO
from fastmarl.config import (
    ALGORITHMS,
    EVAL_SEED_OFFSET,
    ConfigError,
    Derived,
    EnvKwargs,
    PPOConfig,
    StepCount,
    TrainConfig,
    config_key_kind,
    resolve,
)
from fastmarl.envs import make
from fastmarl.envs.api import EnvSpec, JointPolicy, Policy, TimeStep, check_known_keys
from fastmarl.envs.episodes import EpisodeTracker
from fastmarl.envs.scripted import RandomPolicy
from fastmarl.train.checkpoint import (
    CheckpointError,
    atomic_write_text,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from fastmarl.train.rundir import CSVLog, Logger, RunDir, git_revision, versions

LEARNER_SEED_STRIDE = 7919  # learners of one run sample with different generators
PRIORITY_EMA = 0.3  # weight of the newest iteration in the learner's running return against a snapshot
MODES = ("train", "frozen", "scripted", "random")


# -- configs ------------------------------------------------------------------------

PPO_ALGOS = tuple(n for n, a in ALGORITHMS.items() if a.family == "ppo")  # the learners of a group


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
        return _from_dict(cls, d, where)


def parse_groups(items: list[str] | tuple[str, ...]) -> dict[str, GroupSetup]:
    """``["adversary=mappo", "agent=ippo,lr=0.001", "agent=frozen:runs/x"]`` -> group setups
    (see the module docstring). Raises ValueError on malformed items."""
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


def _format_group(name: str, s: GroupSetup) -> str:
    if s.mode == "train":
        return ",".join([f"{name}={s.algo}"] + [f"{k}={v!r}" for k, v in s.ppo.items()])
    arg = s.checkpoint if s.mode == "frozen" else s.scripted if s.mode == "scripted" else None
    return f"{name}={s.mode}" + (f":{arg}" if arg else "")


GroupSetups = Annotated[dict[str, GroupSetup], tyro.constructors.PrimitiveConstructorSpec(
    nargs="*", metavar="NAME=MODE[,key=value]", instance_from_str=parse_groups,
    is_instance=lambda x: isinstance(x, dict),
    str_from_instance=lambda d: [_format_group(k, v) for k, v in d.items()])]


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
    """print evaluation lines"""
    plots: bool = True
    """draw returns.png and ratings.png into the run directory"""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO settings shared by the trained groups (a group's `ppo` overrides change them for that group)"""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "competitive", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CompetitiveConfig":
        """Build from a dict (e.g. a run's config.json); unknown keys are errors."""
        d = {k: v for k, v in d.items() if k != "kind"}
        return _from_dict(cls, d, "")


def _from_dict(cls, d: Any, where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(d).__name__}")
    check_known_keys(d, [f.name for f in dataclasses.fields(cls)], config_key_kind(cls, where), ConfigError)
    kw = dict(d)
    if cls is CompetitiveConfig:
        if "ppo" in kw and isinstance(kw["ppo"], dict):
            kw["ppo"] = _from_dict(PPOConfig, kw["ppo"], "ppo.")
        if "groups" in kw:
            if not isinstance(kw["groups"], dict):
                raise ConfigError(f"groups: expected a mapping group -> setup, got {type(kw['groups']).__name__}")
            kw["groups"] = {g: s if isinstance(s, GroupSetup) else GroupSetup.from_dict(s, f"groups.{g}.")
                            for g, s in kw["groups"].items()}
    return cls(**kw)


# -- policies -----------------------------------------------------------------------

def sub_spec(spec: EnvSpec, groups: list[str] | tuple[str, ...]) -> EnvSpec:
    """The env spec restricted to ``groups`` (same env id, state and masks)."""
    return dataclasses.replace(spec, groups={g: spec.groups[g] for g in groups})


class NoopPolicy:
    """Action 0 for discrete groups, the zero vector (clipped to the box) for continuous ones."""

    def __init__(self, spec: EnvSpec):
        self.spec = spec

    def initial_carry(self, num_envs: int) -> dict:
        return {}

    def act(self, ts: TimeStep, carry: dict, deterministic: bool = True,
            generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict]:
        out = {}
        for name, g in self.spec.groups.items():
            obs = ts.obs[name]
            if g.discrete:
                out[name] = torch.zeros(obs.shape[:2], dtype=torch.long, device=obs.device)
            else:
                low = torch.as_tensor(g.action_space.low, device=obs.device, dtype=obs.dtype)
                high = torch.as_tensor(g.action_space.high, device=obs.device, dtype=obs.dtype)
                zero = torch.zeros(*obs.shape[:2], g.action_dim, device=obs.device, dtype=obs.dtype)
                out[name] = zero.clamp(low, high)
        return out, carry


# name -> factory(spec of the whole env) -> Policy; "baseline" is looked up in the env's module
SCRIPTED: dict[str, Callable[[EnvSpec], Policy]] = {"noop": NoopPolicy}


def register_scripted(name: str, factory: Callable[[EnvSpec], Policy]) -> None:
    """Make ``GroupSetup(mode="scripted", scripted=name)`` use ``factory(env.spec)``
    (a Policy; only the actions of the group it is assigned to are used)."""
    if name == "baseline":
        raise ValueError("'baseline' is reserved for the env module's baseline_policy")
    SCRIPTED[name] = factory


def baseline_factory(env) -> Callable[[EnvSpec], Policy] | None:
    """The ``baseline_policy(spec)`` of the module that defines the env's scenario, or None."""
    obj = getattr(env, "scenario", None) or env
    module = importlib.import_module(type(obj).__module__)
    return getattr(module, "baseline_policy", None)


def scripted_policy(name: str, env, env_kwargs: dict[str, Any] | None = None) -> Policy:
    """The scripted policy ``name`` for ``env`` (whole spec). The env module's
    ``baseline_policy`` also gets those ``env_kwargs`` it accepts (e.g. a speed
    it plans with). Raises ConfigError."""
    baseline = baseline_factory(env)
    known = sorted(SCRIPTED) + (["baseline"] if baseline is not None else [])
    check_known_keys([name], known, f"scripted policy for {env.spec.env_id} (add one with "
                     "fastmarl.train.competitive.register_scripted)", ConfigError)
    factory = baseline if name == "baseline" else SCRIPTED[name]
    kwargs = {}
    if name == "baseline" and env_kwargs:
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in env_kwargs.items() if takes_any or k in params}
    return factory(env.spec, **kwargs)


# -- learners, snapshots and the pool -----------------------------------------------

def learner_config(cfg: CompetitiveConfig, group: str, setup: GroupSetup, index: int) -> TrainConfig:
    """The TrainConfig of one group's learner (its own algo, PPO settings and sampling seed)."""
    check_known_keys(setup.ppo, [f.name for f in dataclasses.fields(PPOConfig)],
                     config_key_kind(PPOConfig, f"groups.{group}.ppo"), ConfigError)
    ppo = dataclasses.replace(cfg.ppo, **setup.ppo)
    return TrainConfig(algo=setup.algo, env=cfg.env, env_kwargs=dict(cfg.env_kwargs), total_steps=cfg.total_steps,
                       num_envs=cfg.num_envs, seed=cfg.seed + LEARNER_SEED_STRIDE * (index + 1), device=cfg.device,
                       gif=False, tensorboard=False, progress=False, ppo=ppo)


def policy_learner(spec: EnvSpec, group: str, algo: str, ppo: PPOConfig, device: str | torch.device) -> PPO:
    """A PPO for ``group`` alone, sized for acting (its weights are loaded afterwards)."""
    cfg = TrainConfig(algo=algo, env=spec.env_id, num_envs=ppo.num_minibatches,
                      total_steps=ppo.num_minibatches * ppo.num_steps, ppo=ppo, device=str(device))
    sub = sub_spec(spec, [group])
    return PPO(sub, cfg, resolve(cfg, sub), device)


def save_snapshot(pool: Path, group: str, step: int, learner: PPO, algo: str) -> Path:
    """Write ``pool/<group>/step_<step>`` (weights + manifest with group, step, algo, PPO settings)."""
    info = {"kind": "snapshot", "group": group, "algo": algo, "ppo": dataclasses.asdict(learner.p),
            "env": learner.spec.env_id}
    return save_checkpoint(Path(pool) / group, step, learner.weights(), {}, info)


def list_snapshots(pool: Path, group: str) -> list[Path]:
    """Snapshot folders of ``group``, oldest first."""
    return list_checkpoints(Path(pool) / group)


def load_snapshot(path: str | Path, spec: EnvSpec, device: str | torch.device = "cpu") -> tuple[PPO, dict]:
    """(policy of the snapshot's group, its manifest), checksums verified."""
    weights, _, manifest = load_checkpoint(Path(path), trainer=False, map_location=device)
    if manifest.get("kind") != "snapshot":
        raise ConfigError(f"{path} is a training checkpoint, not a pool snapshot; use load_group_policy")
    group = manifest["group"]
    if group not in spec.groups:
        raise ConfigError(f"snapshot {path} is of group {group!r}, which {spec.env_id} does not have "
                          f"(groups: {list(spec.groups)})")
    policy = policy_learner(spec, group, manifest["algo"], _from_dict(PPOConfig, manifest["ppo"], "ppo."), device)
    _load_into(policy, weights, path)
    return policy, manifest


def _load_into(policy: PPO, weights: dict[str, Tensor], path: Path | str) -> None:
    try:
        policy.load_weights(weights)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(f"the weights in {path} do not fit group(s) {list(policy.spec.groups)} of "
                          f"{policy.spec.env_id} with these env kwargs: {str(e)[:300]}") from None


def load_group_policy(path: str | Path, group: str, spec: EnvSpec, device: str | torch.device = "cpu") -> PPO:
    """The policy of ``group`` saved at ``path``: a pool snapshot, a competitive run
    (its newest snapshot of the group), a ``fastmarl train`` run directory (its
    latest checkpoint) or a checkpoint folder of one. Raises ConfigError."""
    path = Path(path)
    if (path / "config.json").is_file():
        saved = json.loads((path / "config.json").read_text())
        if saved.get("kind") == "competitive":
            snaps = list_snapshots(path / "pool", group)
            if not snaps:
                raise ConfigError(f"competitive run {path} has no snapshot of group {group!r}")
            path = snaps[-1]
        else:
            path = latest_checkpoint(path / "checkpoints")
    if not (path / "manifest.json").is_file():
        raise ConfigError(f"{path} is neither a pool snapshot, a checkpoint folder nor a run directory")
    manifest = verify_checkpoint(path)
    if manifest.get("kind") == "snapshot":
        policy, manifest = load_snapshot(path, spec, device)
        if manifest["group"] != group:
            raise ConfigError(f"snapshot {path} is of group {manifest['group']!r}, not {group!r}")
        return policy
    run_config = path.parent.parent / "config.json"
    if not run_config.is_file():
        raise ConfigError(f"checkpoint {path} is not inside a run directory (no {run_config}); its network settings "
                          "are unknown")
    train_cfg = TrainConfig.from_dict(json.loads(run_config.read_text()))
    weights, _, _ = load_checkpoint(path, trainer=False, map_location=device)
    mine = {k: v for k, v in weights.items() if k.startswith(f"{group}.")}
    if not mine:
        groups = sorted({k.split(".")[0] for k in weights})
        raise ConfigError(f"checkpoint {path} has no weights of group {group!r} (it has {groups})")
    policy = policy_learner(spec, group, train_cfg.algo, train_cfg.ppo, device)
    _load_into(policy, mine, path)
    return policy


def prioritised_weights(returns: list[float | None]) -> Tensor:
    """Sampling weights over snapshots from the learner's running mean return against
    each (None: never played). ``w_i = exp(-(R_i - min R) / std R)``, unseen = min R:
    the snapshots the learner does worst against are drawn most often."""
    seen = [r for r in returns if r is not None]
    if not seen:
        return torch.ones(len(returns), dtype=torch.float64)
    lo = min(seen)
    scale = float(np.std(seen)) if len(seen) > 1 else 0.0
    scale = scale if scale > 1e-12 else 1.0
    r = torch.tensor([lo if x is None else x for x in returns], dtype=torch.float64)
    return torch.exp(-(r - lo) / scale)


def sample_snapshot(snapshots: list[Path], strategy: str, pool_size: int, generator: torch.Generator,
                    returns: dict[str, float] | None = None) -> Path:
    """Draw one of the newest ``pool_size`` snapshots (``returns``: snapshot name ->
    the learner's running mean return against it, for ``"prioritised"``)."""
    if not snapshots:
        raise ValueError("the pool is empty")
    if strategy == "latest":
        return snapshots[-1]
    window = snapshots[-pool_size:]
    if strategy == "uniform":
        w = torch.ones(len(window), dtype=torch.float64)
    elif strategy == "prioritised":
        w = prioritised_weights([(returns or {}).get(p.name) for p in window])
    else:
        raise ValueError(f"unknown opponent_sampling {strategy!r}")
    return window[int(torch.multinomial(w, 1, generator=generator))]


def _snapshot_step(path: Path) -> int:
    return int(path.name.split("_")[-1])


# -- validation -----------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """What a validated config resolves to against the env."""

    setups: dict[str, GroupSetup]  # every group of the env, in spec order
    trained: list[str]  # groups with mode train, in spec order
    learner_configs: dict[str, TrainConfig]
    learner_derived: dict[str, Derived]
    steps_per_iteration: int  # num_envs * num_steps (shared by all learners)
    num_iterations: int


def validate(cfg: CompetitiveConfig, env) -> Plan:
    """Check ``cfg`` against the env; every problem is a ConfigError naming the setting."""
    spec: EnvSpec = env.spec
    check_known_keys(cfg.groups, spec.groups, f"group of {spec.env_id}", ConfigError)
    for name, value, low in [("num_envs", cfg.num_envs, 1), ("total_steps", cfg.total_steps, 1),
                             ("phase_steps", cfg.phase_steps, 1), ("snapshot_interval", cfg.snapshot_interval, 0),
                             ("pool_size", cfg.pool_size, 1), ("eval_interval", cfg.eval_interval, 0),
                             ("eval_episodes", cfg.eval_episodes, 1), ("matrix_episodes", cfg.matrix_episodes, 0),
                             ("matrix_max_snapshots", cfg.matrix_max_snapshots, 2),
                             ("exploitability_steps", cfg.exploitability_steps, 0)]:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    for name, value, allowed in [("schedule", cfg.schedule, ("alternate", "simultaneous")),
                                 ("opponent_sampling", cfg.opponent_sampling, ("latest", "uniform", "prioritised"))]:
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {list(allowed)}, got {value!r}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads must be >= 1 or None, got {cfg.threads}")
    setups = {g: cfg.groups.get(g, GroupSetup()) for g in spec.groups}
    for g, s in setups.items():
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
        if s.mode == "frozen" and not Path(s.checkpoint).exists():
            raise ConfigError(f"groups.{g}.checkpoint {s.checkpoint!r} does not exist")
        if s.mode == "scripted":
            scripted_policy(s.scripted, env, cfg.env_kwargs)  # raises for unknown names
    trained = [g for g, s in setups.items() if s.mode == "train"]
    if not trained:
        raise ConfigError("no group is trained (mode 'train'); to only compare fixed policies use "
                          "fastmarl.train.competitive.play_matrix")
    configs = {g: learner_config(cfg, g, setups[g], i) for i, g in enumerate(trained)}
    derived = {}
    for g, c in configs.items():
        try:
            derived[g] = resolve(c, sub_spec(spec, [g]))
        except ConfigError as e:
            raise ConfigError(f"group {g!r}: {e}") from None
    steps = {g: c.ppo.num_steps for g, c in configs.items()}
    if len(set(steps.values())) > 1:
        raise ConfigError(f"the learners share the env in lockstep, so their ppo.num_steps must be equal, got {steps}")
    spi = derived[trained[0]].steps_per_iteration
    if cfg.schedule == "alternate" and len(trained) > 1 and cfg.phase_steps < spi:
        raise ConfigError(f"phase_steps={cfg.phase_steps} is shorter than one iteration (num_envs * num_steps = {spi})")
    return Plan(setups, trained, configs, derived, spi, -(-cfg.total_steps // spi))


# -- run directory ----------------------------------------------------------------------

def create_run_dir(cfg: CompetitiveConfig) -> RunDir:
    name = cfg.name or f"{cfg.env}__selfplay__s{cfg.seed}__{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(cfg.runs_dir) / name
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"run directory {path} already exists (resuming a competitive run is not supported); "
                          "choose another --name or delete it")
    path.mkdir(parents=True, exist_ok=True)
    cfg.name = name
    atomic_write_text(path / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    meta = {"versions": versions(), "git": git_revision(), "host": socket.gethostname(),
            "platform": platform.platform(), "argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seed": cfg.seed}
    atomic_write_text(path / "meta.json", json.dumps(meta, indent=2) + "\n")
    return RunDir(path)


def read_config(run_dir: str | Path) -> CompetitiveConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.json)")
    d = json.loads(path.read_text())
    if d.get("kind") != "competitive":
        raise ConfigError(f"{run_dir} is not a competitive run (its config.json has no \"kind\": \"competitive\")")
    return CompetitiveConfig.from_dict(d)


# -- training ----------------------------------------------------------------------------

@dataclass
class CompetitiveResult:
    run_dir: Path
    global_step: int
    learners: dict[str, PPO]  # trained group -> its learner (final weights)
    fixed: dict[str, Policy]  # frozen / scripted / random group -> its policy
    last_eval: dict[str, float] = field(default_factory=dict)
    last_train: dict[str, float] = field(default_factory=dict)


def fixed_policies(plan: Plan, env, device: str | torch.device,
                   env_kwargs: dict[str, Any] | None = None) -> dict[str, Policy]:
    """Policies of the frozen, scripted and random groups."""
    out: dict[str, Policy] = {}
    for g, s in plan.setups.items():
        if s.mode == "frozen":
            out[g] = load_group_policy(s.checkpoint, g, env.spec, device)
        elif s.mode == "scripted":
            out[g] = scripted_policy(s.scripted, env, env_kwargs)
        elif s.mode == "random":
            out[g] = RandomPolicy(sub_spec(env.spec, [g]))
    return out


def train(config: CompetitiveConfig, env=None) -> CompetitiveResult:
    """Train (see the module docstring); ``env`` overrides the env built from the
    config (e.g. a wrapped one with the same spec). Writes the run directory."""
    cfg = dataclasses.replace(config, groups=dict(config.groups), ppo=dataclasses.replace(config.ppo))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    if env is None:
        env = make(cfg.env, num_envs=cfg.num_envs, device=device, seed=cfg.seed, **cfg.env_kwargs)
    elif env.num_envs != cfg.num_envs:
        raise ConfigError(f"the env given has {env.num_envs} envs, the config says num_envs={cfg.num_envs}")
    plan = validate(cfg, env)
    fixed = fixed_policies(plan, env, device, cfg.env_kwargs)
    run = create_run_dir(cfg)
    torch.manual_seed(cfg.seed)  # network initialisation
    learners = {g: PPO(sub_spec(env.spec, [g]), plan.learner_configs[g], plan.learner_derived[g], device)
                for g in plan.trained}
    loop = _Loop(cfg, plan, run, env, learners, fixed)
    return loop.run()


class _Loop:
    def __init__(self, cfg: CompetitiveConfig, plan: Plan, run: RunDir, env, learners: dict[str, PPO],
                 fixed: dict[str, Policy]):
        self.cfg, self.plan, self.run_dir, self.env = cfg, plan, run, env
        self.learners, self.fixed = learners, fixed
        self.pool = run.path / "pool"
        self.tracker = EpisodeTracker(env.spec, cfg.num_envs, env.device)
        self.logger = Logger(run, tensorboard=False)
        self.gen = torch.Generator(device=env.device)  # fixed policies' sampling
        self.gen.manual_seed(cfg.seed + 1)
        self.pool_gen = torch.Generator()  # opponent draws
        self.pool_gen.manual_seed(cfg.seed + 2)
        self.vs_returns: dict[str, dict[str, float]] = {g: {} for g in plan.trained}  # opponent -> snapshot -> R
        self.loaded: dict[Path, PPO] = {}  # snapshots are immutable once written: load each once
        self.dirty: set[str] = set()
        self.step = 0
        self._eval_env = None
        self.last_eval: dict[str, float] = {}
        self.last_train: dict[str, float] = {}

    def active(self, step: int) -> list[str]:
        """The groups that learn in the iteration starting at ``step``."""
        tr = self.plan.trained
        if self.cfg.schedule == "simultaneous" or len(tr) == 1:
            return list(tr)
        return [tr[(step // self.cfg.phase_steps) % len(tr)]]

    def snapshot(self, groups) -> None:
        for g in sorted(groups):
            save_snapshot(self.pool, g, self.step, self.learners[g], self.plan.learner_configs[g].algo)
        self.dirty -= set(groups)

    def run(self) -> CompetitiveResult:
        cfg, plan, env = self.cfg, self.plan, self.env
        t0 = time.perf_counter()
        ts = env.reset(seed=cfg.seed)
        self.snapshot(plan.trained)
        active: list[str] = []
        carry = None
        try:
            for it in range(plan.num_iterations):
                new_active = self.active(self.step)
                if new_active != active:  # a phase ended: its learner goes to the pool, the next one starts
                    self.snapshot(self.dirty)
                    for g in new_active:
                        self.learners[g].start(ts)
                    active = new_active
                opponents = self.draw_opponents(active)
                joint = JointPolicy({**self.fixed, **{g: p for g, (p, _) in opponents.items()}})
                carry = joint.initial_carry(cfg.num_envs)
                t_iter = time.perf_counter()
                ts, carry = self.collect(ts, active, joint, carry)
                losses = {}
                for g in active:
                    losses.update(self.learners[g].update(it / plan.num_iterations))
                self.dirty.update(active)
                prev, self.step = self.step, self.step + plan.steps_per_iteration
                stats = self.tracker.pop()
                self.credit(active, opponents, stats)
                row = {"step": self.step, "iteration": it + 1, "time": time.perf_counter() - t0,
                       "sps": plan.steps_per_iteration / (time.perf_counter() - t_iter), "learning": "+".join(active),
                       **{f"opponent/{g}": _snapshot_step(p) for g, (_, p) in opponents.items()}, **stats, **losses}
                self.logger.log(row)
                self.last_train = row
                last = it + 1 == plan.num_iterations
                if last or _crossed(prev, self.step, cfg.snapshot_interval):
                    self.snapshot(self.dirty)
                if last or _crossed(prev, self.step, cfg.eval_interval):
                    self.evaluate(time.perf_counter() - t0)
        finally:
            self.logger.close()
        result = CompetitiveResult(self.run_dir.path, self.step, self.learners, self.fixed, self.last_eval,
                                   self.last_train)
        if cfg.plots:
            plot_returns(self.run_dir, f"self-play on {cfg.env}")
        if cfg.matrix_episodes and len(plan.trained) == 2:
            evaluate_matrix(self.run_dir.path, plot=cfg.plots, progress=cfg.progress)
        if cfg.exploitability_steps:
            for g in plan.trained:
                if len(plan.trained) > 1:
                    exploitability(self.run_dir.path, g, cfg.exploitability_steps, progress=cfg.progress)
        return result

    def draw_opponents(self, active: list[str]) -> dict[str, tuple[PPO, Path]]:
        """Trained groups that do not learn this iteration: (snapshot policy, its path)."""
        out = {}
        for g in self.plan.trained:
            if g in active:
                continue
            stats = self.vs_returns[g] if self.cfg.opponent_sampling == "prioritised" else None
            path = sample_snapshot(list_snapshots(self.pool, g), self.cfg.opponent_sampling, self.cfg.pool_size,
                                   self.pool_gen, stats)
            if path not in self.loaded:
                if len(self.loaded) >= 4 * len(self.plan.trained) * self.cfg.pool_size:
                    self.loaded.pop(next(iter(self.loaded)))  # the oldest loaded
                self.loaded[path] = load_snapshot(path, self.env.spec, self.env.device)[0]
            out[g] = (self.loaded[path], path)
        return out

    def credit(self, active: list[str], opponents: dict[str, tuple[PPO, Path]], stats: dict[str, float]) -> None:
        """Running mean of the learner's return against each opponent snapshot (prioritised sampling)."""
        for learner in active:
            r = stats.get(_return_key(learner, self.env.spec))
            if r is None:
                continue
            for g, (_, path) in opponents.items():
                old = self.vs_returns[g].get(path.name)
                self.vs_returns[g][path.name] = r if old is None else (1 - PRIORITY_EMA) * old + PRIORITY_EMA * r

    @torch.no_grad()
    def collect(self, ts: TimeStep, active: list[str], joint: JointPolicy, carry) -> tuple[TimeStep, Any]:
        """One rollout of ``num_steps`` steps: active learners act and record, the rest act from ``joint``."""
        env, learners = self.env, [self.learners[g] for g in active]
        centralized = any(lrn.centralized for lrn in learners)
        for lrn in learners:
            lrn.start_rollout()
        for t in range(self.plan.learner_configs[self.plan.trained[0]].ppo.num_steps):
            state = env.state() if centralized else None
            actions, carry = joint.act(ts, carry, False, self.gen)
            for lrn in learners:
                actions.update(lrn.act_step(t, state))
            ts = env.step(actions)
            self.tracker(ts)
            for lrn in learners:
                lrn.record_step(t, ts, env)
        for lrn in learners:
            lrn.end_rollout(env)
        return ts, carry

    def evaluate(self, elapsed: float) -> None:
        cfg, spec = self.cfg, self.env.spec
        if self._eval_env is None:
            self._eval_env = make(cfg.env, num_envs=cfg.eval_episodes, device=self.env.device,
                                  seed=cfg.seed + EVAL_SEED_OFFSET, **cfg.env_kwargs)
        seed = cfg.seed + EVAL_SEED_OFFSET
        row: dict[str, float] = {"step": self.step, "time": elapsed}
        current = {**self.fixed, **self.learners}
        rets = episode_returns(JointPolicy(current), self._eval_env, seed)
        row.update({_return_key(g, spec): v.mean().item() for g, v in rets.items()})
        for g in self.plan.trained:
            if len(self.plan.trained) == 1:
                break
            vs = {**current, **{o: RandomPolicy(sub_spec(spec, [o])) for o in self.plan.trained if o != g}}
            row[f"return_vs_random/{g}"] = episode_returns(JointPolicy(vs), self._eval_env, seed)[g].mean().item()
        self.logger.log(row, kind="eval")
        self.last_eval = row
        if cfg.progress:
            parts = "  ".join(f"{k}={v:.2f}" for k, v in row.items() if k.startswith("return"))
            print(f"step {self.step:>10,}  {elapsed:6.1f}s  {parts}", flush=True)


def _return_key(group: str, spec: EnvSpec) -> str:
    return f"return/{group}" if len(spec.groups) > 1 else "return"


def _crossed(prev: int, now: int, interval: int) -> bool:
    return interval > 0 and now // interval > prev // interval


# -- evaluation -----------------------------------------------------------------------------

@torch.no_grad()
def episode_returns(policy: Policy, env, seed: int, deterministic: bool = False) -> dict[str, Tensor]:
    """One episode in each of the env's E envs (reset with ``seed``: paired start
    states): group -> (E,) return per agent of the group (summed reward / A_g)."""
    spec: EnvSpec = env.spec
    E = env.num_envs
    gen = torch.Generator(device=env.device)
    gen.manual_seed(seed)
    ts = env.reset(seed=seed)
    carry = policy.initial_carry(E)
    finished = torch.zeros(E, dtype=torch.bool, device=env.device)
    returns = {n: torch.zeros(E, device=env.device) for n in spec.groups}
    for step in range(spec.max_episode_steps or 10_000):
        actions, carry = policy.act(ts, carry, deterministic, gen)
        ts = env.step(actions)
        active = (~finished).float()
        for n, g in spec.groups.items():
            returns[n] += ts.reward[n].sum(-1) * active / g.num_agents
        finished |= ts.done
        if (step + 1) % 8 == 0 and bool(finished.all()):
            break
    return returns


def play_matrix(env, side_a: tuple[str, dict[str, Policy]], side_b: tuple[str, dict[str, Policy]],
                others: dict[str, Policy] | None = None, seed: int = 0,
                deterministic: bool = False) -> tuple[Tensor, Tensor]:
    """Every entry of side A against every entry of side B, ``env.num_envs`` paired
    episodes per cell. ``side_*`` = (group, label -> Policy); ``others`` drive the
    remaining groups. Returns (return of A, return of B), each (N_a, N_b, E)."""
    (ga, pa), (gb, pb) = side_a, side_b
    ra = torch.zeros(len(pa), len(pb), env.num_envs)
    rb = torch.zeros_like(ra)
    for i, pol_a in enumerate(pa.values()):
        for j, pol_b in enumerate(pb.values()):
            rets = episode_returns(JointPolicy({**(others or {}), ga: pol_a, gb: pol_b}), env, seed, deterministic)
            ra[i, j], rb[i, j] = rets[ga].cpu(), rets[gb].cpu()
    return ra, rb


def matrix_scores(ret_a: Tensor, ret_b: Tensor) -> Tensor:
    """(N_a, N_b) score of A's entry i against B's entry j in [0, 1] (B's is 1 - it):
    per episode seed, the percentile rank of the cell's ``ret_a - ret_b`` among all
    cells (ties count half), averaged over seeds. Inputs (N_a, N_b, E)."""
    na, nb, E = ret_a.shape
    x = (ret_a - ret_b).reshape(na * nb, E).double()
    n = na * nb
    if n == 1:
        return torch.full((na, nb), 0.5)
    less = (x[:, None] > x[None, :]).sum(1).double()  # (n, E): cells this one beats
    ties = (x[:, None] == x[None, :]).sum(1).double() - 1
    return ((less + 0.5 * ties) / (n - 1)).mean(-1).reshape(na, nb).float()


# -- Elo ratings ----------------------------------------------------------------------------

ELO_SCALE = 400.0 / math.log(10.0)  # rating points per logit


def expected_score(r_a: float, r_b: float) -> float:
    """Elo's expected score of A against B: ``1 / (1 + 10^((r_b - r_a) / 400))``."""
    return 1.0 / (1.0 + 10.0 ** ((r_b - r_a) / 400.0))


def elo_update(r_a: float, r_b: float, score_a: float, k: float = 32.0) -> tuple[float, float]:
    """One game: A scored ``score_a`` (1 win, 0.5 draw, 0 loss, or any value in
    between) against B. Returns the new (r_a, r_b); the sum of ratings is conserved."""
    delta = k * (score_a - expected_score(r_a, r_b))
    return r_a + delta, r_b - delta


def elo_sequence(games: list[tuple[str, str, float]], initial: float = 1500.0, k: float = 32.0) -> dict[str, float]:
    """Sequential Elo over ``(player_a, player_b, score_a)`` games, in order."""
    ratings: dict[str, float] = {}
    for a, b, s in games:
        ra, rb = ratings.get(a, initial), ratings.get(b, initial)
        ratings[a], ratings[b] = elo_update(ra, rb, s, k)
    return ratings


def fit_elo(scores: np.ndarray, games: np.ndarray, prior_games: float = 1.0, mean: float = 1500.0,
            iterations: int = 100) -> np.ndarray:
    """Maximum-likelihood Elo ratings (P,) from pairwise results.

    ``scores[i, j]``: total score of i against j (wins + half draws, or fractional
    scores), ``games[i, j]`` (symmetric): games between them. Maximises
    ``sum_ij scores_ij log p_ij`` with ``p_ij = 1 / (1 + 10^((R_j - R_i) / 400))``
    by Newton's method; ``prior_games`` virtual draws of every player against a
    reference at the mean keep ratings finite when someone wins every game
    (0: the pure MLE, which needs every player to have won and lost something).
    Returned with mean ``mean``.
    """
    s = np.asarray(scores, dtype=np.float64)
    n = np.asarray(games, dtype=np.float64)
    if s.shape != n.shape or s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"scores and games must be square matrices of the same shape, got {s.shape}, {n.shape}")
    if not np.allclose(n, n.T):
        raise ValueError("games must be symmetric (games[i, j] = games[j, i])")
    P = s.shape[0]
    r = np.zeros(P)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))  # (P, P)
        q = 1.0 / (1.0 + np.exp(-r))  # against the reference at 0
        grad = (s - n * p).sum(1) + prior_games * (0.5 - q)
        w = n * p * (1 - p)
        hess = w - np.diag(w.sum(1) + prior_games * q * (1 - q))  # negative semi-definite
        step = np.linalg.lstsq(hess, -grad, rcond=None)[0]
        r = r + np.clip(step, -2.0, 2.0)  # damped: large logit steps overshoot on lopsided data
        if prior_games == 0:
            r -= r.mean()
        if np.abs(step).max() < 1e-10:
            break
    return mean + ELO_SCALE * (r - r.mean())


# -- the matrix of a run ----------------------------------------------------------------------

def _spread(items: list, k: int) -> list:
    if len(items) <= k:
        return items
    idx = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in idx]


def evaluate_matrix(run_dir: str | Path, episodes: int | None = None, seed: int | None = None,
                    prior_games: float = 1.0, extra: dict[str, dict[str, Policy]] | None = None,
                    plot: bool = True, progress: bool = False) -> dict[str, Any]:
    """The snapshot matrix of a competitive run with two trained groups: writes
    ``matrix.csv``, ``ratings.csv`` and (``plot``) ``ratings.png`` into the run and returns
    {"sides", "labels", "steps", "return_a", "return_b", "scores", "ratings"}
    (returns and scores (N_a, N_b), ratings: label -> Elo per side). Each side's
    entries: its snapshots, ``random``, the env's ``baseline`` if it has one, and
    ``extra[group]`` (label -> Policy, e.g. other scripted references)."""
    run = Path(run_dir)
    cfg = read_config(run)
    episodes = episodes or cfg.matrix_episodes or 100
    seed = cfg.seed + 2 * EVAL_SEED_OFFSET if seed is None else seed
    env = make(cfg.env, num_envs=episodes, device=cfg.device, seed=seed, **cfg.env_kwargs)
    plan = validate(cfg, env)
    if len(plan.trained) != 2:
        raise ConfigError(f"the evaluation matrix needs exactly two trained groups, this run trained {plan.trained}")
    sides, labels, steps, policies = [], [], [], []
    for g in plan.trained:
        entries: dict[str, Policy] = {}
        side_steps: list[float] = []
        for path in _spread(list_snapshots(run / "pool", g), cfg.matrix_max_snapshots):
            entries[f"step {_snapshot_step(path)}"] = load_snapshot(path, env.spec, cfg.device)[0]
            side_steps.append(float(_snapshot_step(path)))
        entries["random"] = RandomPolicy(sub_spec(env.spec, [g]))
        side_steps.append(math.nan)
        if baseline_factory(env) is not None:
            entries["baseline"] = scripted_policy("baseline", env, cfg.env_kwargs)
            side_steps.append(math.nan)
        for label, pol in (extra or {}).get(g, {}).items():
            entries[label] = pol
            side_steps.append(math.nan)
        sides.append(g)
        labels.append(list(entries))
        steps.append(side_steps)
        policies.append(entries)
    fixed = fixed_policies(plan, env, cfg.device, cfg.env_kwargs)
    t0 = time.perf_counter()
    ra, rb = play_matrix(env, (sides[0], policies[0]), (sides[1], policies[1]), fixed, seed)
    scores = matrix_scores(ra, rb)
    na, nb = scores.shape
    wins = np.zeros((na + nb, na + nb))
    games = np.zeros_like(wins)
    wins[:na, na:] = episodes * scores.numpy()
    wins[na:, :na] = episodes * (1 - scores.numpy()).T
    games[:na, na:] = episodes
    games[na:, :na] = episodes
    elo = fit_elo(wins, games, prior_games)
    ratings = {sides[0]: dict(zip(labels[0], elo[:na])), sides[1]: dict(zip(labels[1], elo[na:]))}
    if progress:
        print(f"evaluation matrix {na} x {nb} x {episodes} episodes in {time.perf_counter() - t0:.1f}s", flush=True)
    mean_a, mean_b = ra.mean(-1), rb.mean(-1)
    rows = [{f"policy/{sides[0]}": la, f"policy/{sides[1]}": lb, f"return/{sides[0]}": float(mean_a[i, j]),
             f"return/{sides[1]}": float(mean_b[i, j]), f"score/{sides[0]}": float(scores[i, j])}
            for i, la in enumerate(labels[0]) for j, lb in enumerate(labels[1])]
    _write_csv(run / "matrix.csv", rows)
    _write_csv(run / "ratings.csv", [{"group": g, "policy": lab, "step": st, "rating": float(ratings[g][lab])}
                                     for g, labs, sts in zip(sides, labels, steps) for lab, st in zip(labs, sts)])
    if plot:
        plot_ratings(run, sides, labels, steps, ratings, f"self-play on {cfg.env}")
    return {"sides": sides, "labels": labels, "steps": steps, "return_a": mean_a, "return_b": mean_b,
            "scores": scores, "ratings": ratings}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if path.exists():
        path.unlink()
    log = CSVLog(path)
    for row in rows:
        log.write(row)


def plot_ratings(run: Path, sides: list[str], labels: list[list[str]], steps: list[list[float]],
                 ratings: dict[str, dict[str, float]], title: str = "") -> Path:
    """ratings.png: Elo of each side's snapshots vs training step; random/baseline as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sides), figsize=(5 * len(sides), 3.6), squeeze=False)
    for ax, g, labs, sts in zip(axes[0], sides, labels, steps):
        pts = [(s, ratings[g][lab]) for lab, s in zip(labs, sts) if not math.isnan(s)]
        ax.plot(*zip(*pts), "o-", markersize=4, label="snapshots")
        for k, (lab, s) in enumerate(zip(labs, sts)):
            if math.isnan(s):
                ax.axhline(ratings[g][lab], ls="--", color=f"C{k % 8 + 1}", label=lab)
        ax.set_xlabel("env steps")
        ax.set_ylabel("Elo")
        ax.set_title(g)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out = run / "ratings.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def plot_returns(run: RunDir, title: str = "") -> Path | None:
    """returns.png: per-group training return vs env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = CSVLog(run.metrics_csv).rows()
    keys = [k for k in (rows[0] if rows else {}) if k.startswith("return")]
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for k in keys:
        pts = [(float(r["step"]), float(r[k])) for r in rows if r.get(k) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), label=k)
    ax.set_xlabel("env steps")
    ax.set_ylabel("training return per agent")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out = run.path / "returns.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


# -- exploitability -----------------------------------------------------------------------------

def exploitability(run_dir: str | Path, group: str, steps: int, episodes: int | None = None,
                   seed: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Train a fresh best response of the other trained groups against ``group``'s
    final snapshot for ``steps`` env steps (run ``exploitability/br_vs_<group>``
    inside the run), then play both it and the run's final snapshots against that
    snapshot on the same episodes. Returns (and stores in ``exploitability.json``)
    per responder r: ``return_final/r``, ``return_best_response/r``, ``gap/r`` (=
    best response - final), and ``group``'s own returns against each."""
    run = Path(run_dir)
    cfg = read_config(run)
    snaps = list_snapshots(run / "pool", group)
    if not snaps:
        raise ConfigError(f"run {run} has no snapshot of group {group!r} (trained groups have pool/<group>/)")
    final = snaps[-1].resolve()
    env_groups = make(cfg.env, num_envs=1, **cfg.env_kwargs).spec.groups
    responders = [g for g in env_groups if g != group and cfg.groups.get(g, GroupSetup()).mode == "train"]
    if not responders:
        raise ConfigError(f"no other trained group responds to {group!r} in {run}")
    br_cfg = dataclasses.replace(
        cfg, groups={**cfg.groups, group: GroupSetup(mode="frozen", checkpoint=str(final))},
        total_steps=steps, schedule="simultaneous", snapshot_interval=0, eval_interval=0, matrix_episodes=0,
        exploitability_steps=0, runs_dir=str(run / "exploitability"), name=f"br_vs_{group}", seed=cfg.seed + 1,
        progress=progress)
    t0 = time.perf_counter()
    result = train(br_cfg)
    episodes = episodes or cfg.matrix_episodes or cfg.eval_episodes
    seed = cfg.seed + 3 * EVAL_SEED_OFFSET if seed is None else seed
    env = make(cfg.env, num_envs=episodes, device=cfg.device, seed=seed, **cfg.env_kwargs)
    frozen = load_group_policy(final, group, env.spec, cfg.device)
    finals = {r: load_group_policy(list_snapshots(run / "pool", r)[-1], r, env.spec, cfg.device) for r in responders}
    others = {g: p for g, p in result.fixed.items() if g != group}
    vs_final = episode_returns(JointPolicy({**others, group: frozen, **finals}), env, seed)
    vs_br = episode_returns(JointPolicy({**others, group: frozen, **result.learners}), env, seed)
    out: dict[str, Any] = {"group": group, "snapshot": final.name, "snapshot_step": _snapshot_step(final),
                           "best_response_steps": result.global_step, "episodes": episodes,
                           "seconds": time.perf_counter() - t0,
                           f"return/{group}_vs_final": vs_final[group].mean().item(),
                           f"return/{group}_vs_best_response": vs_br[group].mean().item()}
    for r in responders:
        a, b = vs_final[r].mean().item(), vs_br[r].mean().item()
        out[f"return_final/{r}"], out[f"return_best_response/{r}"], out[f"gap/{r}"] = a, b, b - a
        out[f"gap_stderr/{r}"] = ((vs_br[r] - vs_final[r]).std() / math.sqrt(episodes)).item()
    path = run / "exploitability.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored[group] = out
    atomic_write_text(path, json.dumps(stored, indent=2) + "\n")
    if progress:
        gaps = "  ".join(f"gap/{r}={out[f'gap/{r}']:.2f}" for r in responders)
        print(f"exploitability of {group} @ step {out['snapshot_step']:,}: {gaps}", flush=True)
    return out


# -- command line ---------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    """``fastmarl selfplay [options]``: train, then the matrix, ratings and exploitability."""
    if "--resume" in argv or any(a.startswith("--resume=") for a in argv):
        print("fastmarl selfplay: error: resuming a competitive run is not supported; start a new run",
              file=sys.stderr)
        return 2
    try:
        cfg = tyro.cli(CompetitiveConfig, args=list(argv), prog="fastmarl selfplay",
                       config=(tyro.conf.OmitArgPrefixes,),
                       description="Competitive / mixed training with self-play pools "
                                   "(fastmarl.train.competitive).")
        res = train(cfg)
    except (ConfigError, CheckpointError, KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"fastmarl selfplay: error: {msg}", file=sys.stderr)
        return 2
    print(f"run directory: {res.run_dir}  ({res.global_step:,} env steps)")
    return 0
