"""The training loop: collect, update, log, evaluate, checkpoint. And its Python API.

``train(TrainConfig(...))`` runs PPO (IPPO/MAPPO) on a batched env and writes a
run directory (:mod:`fastmarl.train.rundir`); ``train(resume="runs/NAME")``
continues a run from its last checkpoint, exactly where it stopped (same
weights, optimizer, RNG and env state: on CPU the result equals an uninterrupted
run's). ``evaluate_run`` and ``render_run`` load a run's checkpoint.

Value-based runs dispatch on the config's type: ``train(QConfig(...))`` is
:func:`fastmarl.algos.q_learning.train_q` (it returns a ``QResult``, and writes a
run directory only when ``runs_dir`` is set); ``evaluate_run``, ``render_run`` and
``load_policy`` dispatch on the ``"algo"`` saved in the run's config.json.
``train(resume=...)`` of a Q-learning run continues it from its latest checkpoint
(replay buffer included) as exactly as a PPO run's.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from fastmarl.algos.ppo import PPO
from fastmarl.config import ConfigError, Derived, TrainConfig, resolve
from fastmarl.envs import make
from fastmarl.train.checkpoint import (
    env_state_dict, latest_checkpoint, load_checkpoint, load_env_state_dict, save_checkpoint,
)
from fastmarl.train.episodes import EpisodeTracker, evaluate_policy, record_episode
from fastmarl.train.rundir import Logger, RunDir, plot_learning_curve

if TYPE_CHECKING:  # imported lazily below: q_learning imports fastmarl.train's modules
    from fastmarl.algos.q_learning import QConfig, QLearner, QResult

# settings that may change when a run is resumed; everything else must match
RESUMABLE_CHANGES = {"total_steps", "eval_interval", "eval_episodes", "checkpoint_interval", "keep_checkpoints",
                     "gif", "tensorboard", "progress", "threads", "runs_dir", "name"}
EVAL_SEED_OFFSET = 1_000_003  # eval envs never share start states with training envs


@dataclass
class TrainResult:
    run_dir: Path
    global_step: int
    final_eval: dict[str, float] = field(default_factory=dict)
    last_train: dict[str, float] = field(default_factory=dict)


class _StopForTest(Exception):
    """Raised by ``train(_stop_after=n)`` to simulate a crash after iteration n."""


PETTINGZOO_PREFIX = "pz:"  # env="pz:mpe2.simple_spread_v3": a PettingZoo env module, through from_pettingzoo


def _make_env(cfg: TrainConfig, num_envs: int, seed: int, render: bool = False):
    if cfg.env.startswith(PETTINGZOO_PREFIX):
        from fastmarl.envs.pettingzoo import from_pettingzoo

        kwargs = dict(cfg.env_kwargs)
        if render:  # only the GIF's env draws frames (one pygame surface per env otherwise)
            kwargs.setdefault("render_mode", "rgb_array")
        env = from_pettingzoo(pettingzoo_factory(cfg.env, kwargs), num_envs, device=cfg.device, seed=seed)
    else:
        env = make(cfg.env, num_envs=num_envs, device=cfg.device, seed=seed, **cfg.env_kwargs)
    if cfg.message_bits:
        from fastmarl.envs.comm_wrappers import BroadcastChannel

        try:
            env = BroadcastChannel(env, vocab_size=2, message_length=cfg.message_bits, comm_range=cfg.comm_range,
                                   flip_prob=cfg.message_flip_prob, drop_prob=cfg.message_drop_prob)
        except ValueError as e:
            raise ConfigError(f"--message-bits {cfg.message_bits}: {e}") from None
    if cfg.comm_range is not None and cfg.ppo.comm != "none":  # the actors' receive masks need positions
        from fastmarl.envs.comm_wrappers import AgentPositions

        try:
            env = AgentPositions(env)
        except ValueError as e:
            raise ConfigError(f"--comm-range {cfg.comm_range} with --ppo.comm {cfg.ppo.comm}: {e}") from None
    return env


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
        raise ConfigError(f"env {env!r}: cannot import {module!r} ({e}); check the name ({example}) or install "
                          "the package that provides it (mpe2 for the MPE tasks)") from None
    fn = getattr(mod, "parallel_env", None) or getattr(mod, "env", None)
    if not callable(fn):
        raise ConfigError(f"env {env!r}: module {module!r} has no parallel_env() or env() factory; name a "
                          f"PettingZoo environment module, {example}")
    return lambda: fn(**kwargs)


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
        if isinstance(v, dict) and k == "ppo":
            out.update(_flat(v, f"{k}."))
        else:
            out[prefix + k] = v
    return out


def _is_q_config(cfg: Any) -> bool:
    from fastmarl.algos.q_learning import QConfig

    return isinstance(cfg, QConfig)


def train(config: TrainConfig | QConfig | None = None, *, resume: str | Path | None = None,
          _stop_after: int | None = None) -> TrainResult | QResult:
    """Train; see the module docstring. ``resume`` is a run directory; with it,
    ``config`` may override only the settings in RESUMABLE_CHANGES. A QConfig
    trains IQL/VDN/QMIX with ``train_q`` and returns its ``QResult``."""
    if _is_q_config(config) and resume is None:
        from fastmarl.algos.q_learning import train_q

        return train_q(config, _stop_after=_stop_after)
    if resume is not None:
        run = RunDir.open(resume)
        saved = run.read_config()
        cfg = config if config is not None else saved
        if _is_q_config(saved) != _is_q_config(cfg):
            raise ConfigError(f"{run.path} is a {saved.algo} run; resume it with a {type(saved).__name__} (or none), "
                              f"not a {type(cfg).__name__}")
        cfg = dataclasses.replace(cfg, name=saved.name, runs_dir=str(run.path.parent))
        _check_resume_config(saved, cfg)
        if _is_q_config(saved):
            from fastmarl.algos.q_learning import train_q

            return train_q(cfg, resume=run.path, _stop_after=_stop_after)
    else:
        if config is None:
            raise ConfigError("train() needs a TrainConfig or resume=<run directory>")
        cfg = dataclasses.replace(config, ppo=dataclasses.replace(config.ppo))
        run = None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    env = _make_env(cfg, cfg.num_envs, cfg.seed)
    derived = resolve(cfg, env.spec)  # every config error surfaces before anything is written
    if run is None:
        run = RunDir.create(cfg)
    torch.manual_seed(cfg.seed)  # network initialisation
    algo = PPO(env.spec, cfg, derived, device)
    tracker = EpisodeTracker(env.spec, cfg.num_envs, device)
    iteration, global_step, elapsed = 0, 0, 0.0
    resume_step = None
    if resume is not None:
        ckpt = latest_checkpoint(run.checkpoints)
        weights, state, manifest = load_checkpoint(ckpt, map_location=device)
        algo.load_weights(weights)
        algo.load_trainer_state(state["algo"])
        if not load_env_state_dict(env, state["env"]):
            algo.begin(env.reset(seed=cfg.seed + manifest["iteration"]))  # not exact, but valid
        tracker.load_state_dict(state["tracker"])
        iteration, global_step, elapsed = manifest["iteration"], manifest["step"], manifest["elapsed"]
        resume_step = global_step
        run.write_config(cfg)  # with the overrides (e.g. a longer total_steps), once the checkpoint loaded
    else:
        algo.begin(env.reset(seed=cfg.seed))
    logger = Logger(run, cfg.tensorboard, resume_step)
    loop = _Loop(cfg, derived, run, env, algo, tracker, logger, iteration, global_step, elapsed, _stop_after)
    try:
        return loop.run()
    finally:
        logger.close()


class _Loop:
    def __init__(self, cfg: TrainConfig, derived: Derived, run: RunDir, env, algo: PPO, tracker: EpisodeTracker,
                 logger: Logger, iteration: int, global_step: int, elapsed: float, stop_after: int | None):
        self.cfg, self.derived, self.run_dir, self.env, self.algo = cfg, derived, run, env, algo
        self.tracker, self.logger = tracker, logger
        self.iteration, self.global_step, self.elapsed_before = iteration, global_step, elapsed
        self.stop_after = stop_after
        self._eval_env = None
        self.last_eval: dict[str, float] = {}
        self.last_train: dict[str, float] = {}

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def run(self) -> TrainResult:
        cfg, d = self.cfg, self.derived
        self.t0 = time.perf_counter()
        total = d.num_iterations * d.steps_per_iteration
        with _progress(cfg.progress) as bar:
            task = bar.add_task(f"{cfg.algo} {cfg.env}", total=total, completed=self.global_step, sps="-", ret="-")
            while self.iteration < d.num_iterations:
                t_iter = time.perf_counter()
                self.algo.collect(self.env, self.tracker)
                losses = self.algo.update(self.iteration / d.num_iterations)
                prev = self.global_step
                self.iteration += 1
                self.global_step += d.steps_per_iteration
                sps = d.steps_per_iteration / (time.perf_counter() - t_iter)
                row = {"step": self.global_step, "iteration": self.iteration, "time": self.elapsed(), "sps": sps,
                       **self.tracker.pop(), **losses}
                self.logger.log(row)
                self.last_train = row
                bar.update(task, completed=self.global_step, sps=f"{sps:,.0f}",
                           ret=f"{row['return']:.2f}" if "return" in row else "-")
                last = self.iteration == d.num_iterations
                if last or _crossed(prev, self.global_step, cfg.eval_interval):
                    self.evaluate(bar)
                if last or _crossed(prev, self.global_step, cfg.checkpoint_interval):
                    self.checkpoint()
                if self.stop_after is not None and self.iteration >= self.stop_after:
                    raise _StopForTest(self.iteration)
        if cfg.gif:
            record_episode(self.algo, _make_env(cfg, 1, cfg.seed + EVAL_SEED_OFFSET, render=True), self.run_dir.gif,
                           deterministic=True, seed=cfg.seed + EVAL_SEED_OFFSET)
        return TrainResult(self.run_dir.path, self.global_step, self.last_eval, self.last_train)

    def evaluate(self, bar) -> None:
        cfg = self.cfg
        if self._eval_env is None:
            self._eval_env = _make_env(cfg, cfg.eval_episodes, cfg.seed + EVAL_SEED_OFFSET)
        row: dict[str, float] = {"step": self.global_step, "time": self.elapsed()}
        for mode, det in (("det", True), ("stoch", False)):
            res = evaluate_policy(self.algo, self._eval_env, deterministic=det, seed=cfg.seed + EVAL_SEED_OFFSET)
            row.update({_eval_key(k, mode): v for k, v in res.items()})
        self.logger.log(row, kind="eval")
        self.last_eval = row
        plot_learning_curve(self.run_dir, f"{cfg.algo} on {cfg.env}")
        bar.console.print(f"step {self.global_step:>10,}  {self.elapsed():6.1f}s  eval return: deterministic "
                          f"{row['return_det']:.2f}, stochastic {row['return_stoch']:.2f}")

    def checkpoint(self) -> None:
        a = self.algo
        trainer = {"algo": a.trainer_state(), "env": env_state_dict(self.env), "tracker": self.tracker.state_dict()}
        info = {"iteration": self.iteration, "elapsed": self.elapsed(), "algo": self.cfg.algo, "env": self.cfg.env}
        save_checkpoint(self.run_dir.checkpoints, self.global_step, a.weights(), trainer, info,
                        keep=self.cfg.keep_checkpoints)


def _eval_key(key: str, mode: str) -> str:
    """return -> return_det, return/adversary -> return_det/adversary."""
    head, sep, group = key.partition("/")
    return f"{head}_{mode}{sep}{group}"


def _crossed(prev: int, now: int, interval: int) -> bool:
    return interval > 0 and now // interval > prev // interval


class _NoBar:
    def __init__(self):
        from rich.console import Console

        self.console = Console(highlight=False)

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool):
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[sps]} steps/s"), TextColumn("return {task.fields[ret]}"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


# -- loading a run ----------------------------------------------------------------

def load_policy(run_dir: str | Path, checkpoint: str | Path | None = None, num_envs: int = 1,
                render: bool = False) -> tuple[PPO | QLearner, TrainConfig | QConfig, Any, dict]:
    """(policy, config, env with ``num_envs`` envs, checkpoint manifest) of a run:
    PPO and TrainConfig, or for a value-based run QLearner and QConfig."""
    run = RunDir.open(run_dir)
    cfg = run.read_config()
    ckpt = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run.checkpoints)
    if _is_q_config(cfg):
        return _load_q_policy(cfg, ckpt, num_envs)
    env = _make_env(cfg, num_envs, cfg.seed + EVAL_SEED_OFFSET, render)
    derived = resolve(cfg, env.spec)
    algo = PPO(env.spec, cfg, derived, cfg.device)
    weights, _, manifest = load_checkpoint(ckpt, trainer=False, map_location=cfg.device)
    algo.load_weights(weights)
    return algo, cfg, env, manifest


def _load_q_policy(cfg: QConfig, ckpt: Path, num_envs: int) -> tuple[QLearner, QConfig, Any, dict]:
    from fastmarl.algos.q_learning import QLearner, validate_q_config
    from fastmarl.algos.tabular import linear_schedule

    device = torch.device(cfg.device)
    env = make(cfg.env, num_envs=num_envs, device=device, seed=cfg.seed + EVAL_SEED_OFFSET, **cfg.env_kwargs)
    learner = QLearner(env.spec, cfg, validate_q_config(cfg, env.spec), device)
    weights, _, manifest = load_checkpoint(ckpt, trainer=False, map_location=device)
    learner.load_weights(weights)
    # "stochastic" evaluation of a Q-learner is epsilon-greedy with the exploration rate it had at the checkpoint
    learner.epsilon = linear_schedule(cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_anneal_steps, manifest["step"])
    return learner, cfg, env, manifest


def evaluate_run(run_dir: str | Path, episodes: int = 100, checkpoint: str | Path | None = None,
                 seed: int | None = None) -> dict[str, float]:
    """Deterministic and stochastic evaluation of a run's checkpoint (default: latest)."""
    algo, cfg, env, manifest = load_policy(run_dir, checkpoint, num_envs=episodes)
    seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    out: dict[str, float] = {"step": manifest["step"]}
    for mode, det in (("det", True), ("stoch", False)):
        for k, v in evaluate_policy(algo, env, deterministic=det, seed=seed).items():
            out[_eval_key(k, mode)] = v
    return out


def render_run(run_dir: str | Path, out: str | Path | None = None, checkpoint: str | Path | None = None,
               deterministic: bool = True, seed: int | None = None) -> Path:
    """GIF of one episode of a run's policy (default: runs/NAME/episode.gif)."""
    algo, cfg, env, _ = load_policy(run_dir, checkpoint, num_envs=1, render=True)
    seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    return record_episode(algo, env, out or RunDir(run_dir).gif, deterministic=deterministic, seed=seed)
