"""``train``, the Python API of every algorithm, and loading a run.

``train(TrainConfig(...))`` (IPPO/MAPPO), ``train(HAPPOTrainConfig(...))``, ``train(QConfig(...))`` (IQL/VDN/QMIX),
``train(SACConfig(...))`` (MASAC/ISAC) or ``train(DDPGConfig(...))`` (MADDPG/IDDPG)
builds the env and the config's learner and runs the one training loop
(:mod:`fastmarl.train.loop`), writing a run directory (:mod:`fastmarl.train.rundir`)
unless ``runs_dir`` is None; ``train(resume="runs/NAME")`` continues a run from its
last checkpoint, exactly where it stopped (same weights, optimizer, RNG, env state
and, for the Q family, replay buffer: on CPU the result equals an uninterrupted
run's). ``evaluate_run``, ``render_run`` and ``load_run`` load a run's checkpoint,
whatever its algorithm (the ``"algo"`` saved in its config.json).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from pettingzoo.utils.deprecated_module import DeprecatedEnv, DeprecatedModule

from fastmarl.algos.ddpg import DDPGLearner
from fastmarl.algos.happo import HAPPO
from fastmarl.algos.ppo import PPO
from fastmarl.algos.q_learning import QLearner
from fastmarl.algos.sac import SACLearner
from fastmarl.algos.tabular import TabularQ
from fastmarl.config import (
    ALGORITHMS,
    EVAL_SEED_OFFSET,
    FAMILIES,
    ConfigError,
    RunConfig,
    TabularConfig,
    TrainConfig,
    check_env_settings,
    check_int,
    resolve,
    resolve_happo,
    validate_offpolicy,
    validate_q_config,
)
from fastmarl.config.images import check_images, image_run_defaults
from fastmarl.envs import make
from fastmarl.envs.api import check_known_keys
from fastmarl.envs.comm_wrappers import AgentPositions, BroadcastChannel
from fastmarl.envs.episodes import record_episode
from fastmarl.envs.pz_vecenv import from_pettingzoo
from fastmarl.envs.wrappers import Discretizer
from fastmarl.train.checkpoint import (
    MODEL,
    load_checkpoint,
    newest_valid_checkpoint,
    remove_stale_temporaries,
    set_aside,
)
from fastmarl.train.loop import Callback, Loop, LoopSettings, TrainResult, evaluate, run_loop
from fastmarl.train.rundir import RunDir

# settings that may change when a run is resumed; everything else must match
RESUMABLE_CHANGES = {"total_steps", "eval_interval", "eval_episodes", "checkpoint_interval", "keep_checkpoints",
                     "gif", "tensorboard", "progress", "threads", "runs_dir", "name", "log_interval",
                     "env_backend", "env_workers"}  # the env backends step the same trajectories

PETTINGZOO_PREFIX = "pz:"  # env="pz:mpe2.simple_spread_v3": a PettingZoo env module, through from_pettingzoo


def _make_env(cfg: RunConfig, num_envs: int, seed: int, render: bool = False):
    """The run's batched env: a registered id or ``pz:<module>``, with the PPO family's message
    channel and position wrappers when configured."""
    if cfg.env.startswith(PETTINGZOO_PREFIX):
        kwargs = dict(cfg.env_kwargs)
        if render:  # only the GIF's env draws frames (one pygame surface per env otherwise)
            kwargs.setdefault("render_mode", "rgb_array")
        backend = getattr(cfg, "env_backend", "inprocess") if not render else "inprocess"  # a GIF: one env
        workers = None
        if backend != "inprocess":
            workers = min(cfg.env_workers or os.cpu_count() or 1, num_envs)
        env = from_pettingzoo(pettingzoo_factory(cfg.env, kwargs), num_envs, device=cfg.device, seed=seed,
                              need_state=ALGORITHMS[cfg.algo].needs_state, backend=backend, num_workers=workers)
    else:
        env = make(cfg.env, num_envs=num_envs, device=cfg.device, seed=seed, **cfg.env_kwargs)
    if isinstance(cfg, TrainConfig):
        env = _comm_wrappers(cfg, env)
    return env


def _comm_wrappers(cfg: TrainConfig, env):
    if cfg.message_bits:
        try:
            env = BroadcastChannel(env, vocab_size=2, message_length=cfg.message_bits, comm_range=cfg.comm_range,
                                   flip_prob=cfg.message_flip_prob, drop_prob=cfg.message_drop_prob)
        except ValueError as e:
            raise ConfigError(f"--message-bits {cfg.message_bits}: {e}") from None
    if cfg.comm_range is not None and cfg.ppo.comm != "none":  # the actors' receive masks need positions
        try:
            env = AgentPositions(env)
        except ValueError as e:
            raise ConfigError(f"--comm-range {cfg.comm_range} with --comm {cfg.ppo.comm}: {e}") from None
    return env


# config family (fastmarl.config.ALGORITHMS[algo].family) -> (its validator, its learner class)
LEARNERS: dict[str, tuple[Callable, type]] = {
    "ppo": (resolve, PPO),
    "happo": (resolve_happo, HAPPO),
    "q": (validate_q_config, QLearner),
    "sac": (validate_offpolicy, SACLearner),
    "ddpg": (validate_offpolicy, DDPGLearner),
}
assert {a.family for a in ALGORITHMS.values()} <= set(LEARNERS), "every algorithm's family needs a learner"


def build_learner(cfg: RunConfig, spec, device: torch.device | str):
    """The config's learner for an env of ``spec``, its networks initialised from ``cfg.seed``.
    Raises ConfigError (every config error surfaces before anything is written)."""
    family = next((f for f, cls in FAMILIES.items() if type(cfg) is cls), None)  # HAPPO's config extends PPO's
    if family is None:
        raise ConfigError(f"train() takes one of {[c.__name__ for c in FAMILIES.values()]}, got {type(cfg).__name__}")
    validate, learner = LEARNERS[family]
    derived = validate(cfg, spec)  # checks that cfg.algo is one of the family's algorithms
    torch.manual_seed(cfg.seed)  # network initialisation
    return learner(spec, cfg, derived, device)


def pettingzoo_factory(env: str, kwargs: dict[str, Any]) -> Callable[[], Any]:
    """``"pz:mpe2.simple_spread_v3"`` -> a factory ``lambda: mpe2.simple_spread_v3.parallel_env(**kwargs)``
    (the module's ``env()`` when it has no ``parallel_env``). Raises ConfigError."""
    module = env[len(PETTINGZOO_PREFIX):]
    example = "e.g. pz:mpe2.simple_spread_v3 or pz:mpe2.simple_tag_v3"
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise ConfigError(f"env {env!r}: expected pz:<importable module of a PettingZoo env>, {example}")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        parent, _, leaf = module.rpartition(".")
        hint = _deprecated_hint(parent, leaf) if parent else None
        if hint:  # PettingZoo's own message for an old version: "pursuit_v4 is now deprecated, use pursuit_v5 ..."
            raise ConfigError(f"env {env!r}: {hint}") from None
        raise ConfigError(f"env {env!r}: cannot import {module!r} ({e}); check the name ({example}) or install "
                          "the package that provides it (mpe2 for the MPE tasks)") from None
    fn = getattr(mod, "parallel_env", None) or getattr(mod, "env", None)
    if not callable(fn):
        raise ConfigError(f"env {env!r}: module {module!r} has no parallel_env() or env() factory; name a "
                          f"PettingZoo environment module, {example}")
    known = _constructor_kwargs(mod)
    if known is not None:
        check_known_keys(kwargs, known, f"keyword argument of {module} (env_kwargs)", ConfigError)
    return lambda: fn(**kwargs)


def _deprecated_hint(parent: str, leaf: str) -> str | None:
    """PettingZoo's message for ``parent.leaf`` when it is an old version of an env that
    PettingZoo still knows (its package ``__getattr__`` returns a DeprecatedModule), else None."""
    try:
        found = getattr(importlib.import_module(parent), leaf, None)
    except (ImportError, AttributeError):
        return None
    if not isinstance(found, DeprecatedModule):
        return None
    try:
        found.env()
    except DeprecatedEnv as e:
        return str(e)
    return None


def _constructor_kwargs(mod: Any) -> list[str] | None:
    """Keyword names of a PettingZoo env module's constructor: ``raw_env``'s signature, or, when it
    passes ``**kwargs`` on, that of the ``_env`` class it wraps (the SISL envs); None if unknown."""
    raw = getattr(mod, "raw_env", None)
    candidates = [raw, vars(sys.modules.get(getattr(raw, "__module__", ""), mod)).get("_env")] if raw else []
    for c in candidates:
        if not callable(c):
            continue
        try:
            params = inspect.signature(c).parameters.values()
        except (TypeError, ValueError):
            continue
        if any(p.kind is p.VAR_KEYWORD for p in params):
            continue
        return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return None


def _check_resume_config(saved: TrainConfig, new: TrainConfig) -> None:
    a, b = _flat(saved.to_dict()), _flat(new.to_dict())
    changed = [k for k in a if a[k] != b.get(k) and k not in RESUMABLE_CHANGES]
    if changed:
        diffs = ", ".join(f"{k}: {a[k]!r} -> {b.get(k)!r}" for k in changed)
        raise ConfigError(f"cannot change {diffs} when resuming (the checkpoint was trained with the saved "
                          f"values); only {sorted(RESUMABLE_CHANGES)} may change. Start a new run instead.")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("ppo", "happo"):
            out.update(_flat(v, f"{k}."))
        else:
            out[prefix + k] = v
    return out


def train(config: RunConfig | None = None, *, resume: str | Path | None = None,
          callback: Callback | None = None) -> TrainResult:
    """Train; see the module docstring. ``resume`` is a run directory; with it, ``config``
    may override only the settings in RESUMABLE_CHANGES. ``callback(info)`` is called after
    every collect/update (:class:`fastmarl.train.loop.LoopInfo`); returning True stops the run
    after a checkpoint (``result.stopped``)."""
    run = None
    if resume is not None:
        run = RunDir.open(resume)
        saved = run.read_config()
        cfg = config if config is not None else saved
        if type(saved) is not type(cfg):
            raise ConfigError(f"{run.path} is a {saved.algo} run; resume it with a {type(saved).__name__} (or none), "
                              f"not a {type(cfg).__name__}")
        cfg = dataclasses.replace(cfg, name=saved.name, runs_dir=str(run.path.parent))
        _check_resume_config(saved, cfg)
    else:
        if config is None:
            raise ConfigError("train() needs a TrainConfig, QConfig, SACConfig or DDPGConfig, or resume=<run directory>")
        cfg = copy.deepcopy(config)
    check_env_settings(cfg)  # first: a bad thread count, num_envs or device is named as the setting it is
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    if run is None and cfg.env.startswith(PETTINGZOO_PREFIX):
        cfg = _checked_on_one_env(cfg)
    env = _make_env(cfg, cfg.num_envs, cfg.seed)
    learner = build_learner(cfg, env.spec, device)
    if run is None and cfg.runs_dir is not None:
        run = RunDir.create(cfg)
    try:
        loop = Loop(LoopSettings.of(cfg), learner, env, lambda n, seed, render: _make_env(cfg, n, seed, render), run,
                    callback)
        if resume is not None:
            loop.restore(resume_checkpoint(run), device)
            run.write_config(cfg)  # with the overrides (e.g. a longer total_steps), once the checkpoint loaded
        else:
            loop.start()
        return loop.run()
    finally:
        _close(env)  # stops the workers of the process and ray env backends


def _close(env) -> None:
    close = getattr(env, "close", None)
    if close is not None:
        close()


def _checked_on_one_env(cfg: RunConfig) -> RunConfig:
    """A PettingZoo env's run, checked against one copy of the env before ``num_envs`` copies are made
    (each may draw frames): a config error, or a run that would not fit in memory, is refused first.
    With image observations, the settings left at their general defaults become ``IMAGE_DEFAULTS``
    (fewer envs and evaluation episodes), said in one line on stderr."""
    probe = _make_env(cfg, 1, cfg.seed)
    spec = probe.spec
    getattr(probe, "close", lambda: None)()
    family = next((f for f, cls in FAMILIES.items() if type(cfg) is cls), None)
    if isinstance(cfg, TrainConfig):  # the PPO family (HAPPO's config extends it): a CNN torso for images
        cfg, changes = image_run_defaults(cfg, spec, check_images(cfg.ppo.images, spec))
        if changes:
            images = {g.name: g.source_shape for g in spec.groups.values() if g.image_observations}
            print(f"{spec.env_id}: image observations {images}, so " + ", ".join(
                f"{k} {new} (not {old})" for k, (old, new) in changes.items()) + "; set them to choose others",
                file=sys.stderr)
    if family is not None:
        LEARNERS[family][0](cfg, spec)
    return cfg


def resume_checkpoint(run: RunDir) -> Path:
    """The checkpoint a resume continues from: the newest valid one. First removes what killed
    writes left in the run directory and its checkpoints folder; a damaged newer checkpoint is
    renamed ``damaged-step_*`` (kept, never deleted; the resumed run writes that step anew), and
    stderr says which checkpoints were skipped, why, and which one the run continues from."""
    for folder in (run.path, run.checkpoints):
        for p in remove_stale_temporaries(folder):
            print(f"resume: removed {p}, left by a write that was interrupted", file=sys.stderr)
    ckpt, skipped = newest_valid_checkpoint(run.checkpoints)
    for path, why in skipped:
        kept = f"; kept as {set_aside(path)}" if path is not None else ""
        print(f"warning: resume: skipped a damaged checkpoint: {why}{kept}", file=sys.stderr)
    if skipped:
        print(f"resume: continuing from {ckpt}, the newest valid checkpoint", file=sys.stderr)
    return ckpt


def _policy_checkpoint(run: RunDir, checkpoint: str | Path | None) -> Path:
    """The checkpoint to evaluate or render: ``checkpoint`` if given, else the newest whose model
    file verifies (a damaged trainer state does not matter here; a skipped checkpoint is named on
    stderr)."""
    if checkpoint is not None:
        return Path(checkpoint)
    ckpt, skipped = newest_valid_checkpoint(run.checkpoints, only=(MODEL,))
    for _, why in skipped:
        print(f"warning: skipped a damaged checkpoint: {why}; using {ckpt.name}", file=sys.stderr)
    return ckpt


@dataclass
class TabularResult:
    episode_returns: torch.Tensor
    """(N,) return of every completed episode in completion order: the mean over agents of each agent's summed reward"""
    learner: TabularQ
    """the trained tables (``learner.tables``) and the greedy policy (``learner.act``)"""
    steps: int
    """env steps taken"""


def train_tabular(env, cfg: TabularConfig | None = None, discretizers: dict[str, Discretizer] | None = None
                  ) -> TabularResult:
    """Independent tabular Q-learning (:mod:`fastmarl.algos.tabular`) on a batched env with discrete
    actions, through the one training loop: no files, no evaluation; the result holds every training
    episode's return."""
    cfg = cfg or TabularConfig()
    learner = TabularQ(env.spec, cfg, env.device, discretizers)
    settings = LoopSettings(seed=cfg.seed, total_steps=cfg.total_steps, log_interval=cfg.total_steps,
                            eval_interval=0, eval_episodes=0, checkpoint_interval=0, keep_checkpoints=1, gif=False,
                            tensorboard=False, progress=False, title=f"tabular_iql {env.spec.env_id}",
                            info={"algo": "tabular_iql", "env": env.spec.env_id})
    run_loop(settings, learner, env, None)
    return TabularResult(learner.episode_returns, learner, learner.env_steps)


# -- loading a run ----------------------------------------------------------------

def load_run(run_dir: str | Path, checkpoint: str | Path | None = None, num_envs: int = 1,
             render: bool = False, device: str | None = None) -> tuple[Any, RunConfig, Any, dict]:
    """(learner, config, env with ``num_envs`` envs, checkpoint manifest) of a run: the learner of its
    algorithm with the checkpoint's weights (a Q-learner's epsilon as at that step), on the run's device
    or ``device``. Needs only a valid model file: a damaged trainer state does not matter.
    (``fastmarl.load_policy`` wraps this for acting on PettingZoo-style dicts.)"""
    run = RunDir.open(run_dir)
    cfg = run.read_config()
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    check_env_settings(cfg)  # a device this machine lacks is named in one line
    ckpt = _policy_checkpoint(run, checkpoint)
    env = _make_env(cfg, num_envs, cfg.seed + EVAL_SEED_OFFSET, render)
    learner = build_learner(cfg, env.spec, cfg.device)
    weights, _, manifest = load_checkpoint(ckpt, trainer=False, map_location=cfg.device)
    learner.load_weights(weights)
    if isinstance(learner, QLearner):  # its "stochastic" policy: epsilon-greedy with the checkpoint's epsilon
        learner.set_step(manifest["step"])
    return learner, cfg, env, manifest


def evaluate_run(run_dir: str | Path, episodes: int = 100, checkpoint: str | Path | None = None,
                 seed: int | None = None) -> dict[str, float]:
    """Deterministic and stochastic evaluation of a run's checkpoint (default: latest)."""
    check_int("episodes", episodes, 1)
    algo, cfg, env, manifest = load_run(run_dir, checkpoint, num_envs=episodes)
    seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    try:
        return {"step": manifest["step"], **evaluate(algo, env, ("det", "stoch"), seed)}
    finally:
        _close(env)


def render_run(run_dir: str | Path, out: str | Path | None = None, checkpoint: str | Path | None = None,
               deterministic: bool = True, seed: int | None = None) -> Path:
    """GIF of one episode of a run's policy (default: runs/NAME/episode.gif)."""
    algo, cfg, env, _ = load_run(run_dir, checkpoint, num_envs=1, render=True)
    seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    return record_episode(algo, env, out or RunDir(run_dir).gif, deterministic=deterministic, seed=seed)
