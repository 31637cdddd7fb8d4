"""The one training loop: any :class:`~fastmarl.algos.learner.Learner`, one batched env.

``run_loop`` repeats ``learner.collect(env, tracker)`` and ``learner.update(progress)``
until the run's env-step budget is spent, and does once, for every algorithm:

- log rows every ``log_interval`` env steps (0: after every collect), the
  learner's update metrics averaged over the interval, episode returns of the
  training env (:class:`EpisodeTracker`), ``metrics.csv`` and TensorBoard;
- evaluation every ``eval_interval`` env steps and at the end, on separate envs
  seeded ``seed + EVAL_SEED_OFFSET`` (one episode per env, ``eval_episodes`` envs)
  in each of the learner's ``eval_modes`` (or the row of the learner's own
  ``evaluate(env, seed)``, where it has one: self-play's per-group returns):
  ``eval.csv`` and the learning curve;
- checkpoints every ``checkpoint_interval`` env steps and at the end (weights,
  trainer state, env state, episode statistics, this loop's own state, the
  learner's extra tensor files), and exact resume from the latest one;
- ``callback(info)`` after every collect/update; returning True stops the run
  (after a checkpoint, so it can be resumed); an exception it raises ends the
  run as a crash would;
- a GIF of a deterministic evaluation episode at the end;
- ``marl_eval.json`` at the end (:mod:`fastmarl.train.marl_eval`): every evaluation's per-episode
  deterministic returns and the final policy's over 10x the episodes, in marl-eval's layout;
- ``references.json`` at the first evaluation: the returns of uniform random play and of the env's
  scripted controller where it has one (:mod:`fastmarl.envs.references`), drawn on the learning curve;
- a NaN or infinite loss (``NonFiniteLoss`` from ``update``) stops the run, naming the
  env step, the loss and the last good checkpoint;
- memory that stays flat over long runs: after each evaluation and checkpoint,
  :func:`release_memory` collects the reference cycles they leave (matplotlib figures,
  serialisation buffers; about 3 MB an evaluation otherwise, freed only by a rare full
  collection) and hands freed heap pages back to the OS (``malloc_trim`` on glibc), which
  otherwise keeps them fragmented: without it a MAPPO run's resident memory rose about 5%
  per 10 evaluations (``benchmarks/soak.py``, ``docs/benchmarks.md``).

Without a run directory (``run=None``) nothing is written: the result holds the
log rows and evaluations.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from fastmarl.algos.learner import Learner, NonFiniteLoss
from fastmarl.config import EVAL_SEED_OFFSET
from fastmarl.envs.episodes import EpisodeTracker, evaluate_policy, format_headline, headline, record_episode
from fastmarl.envs.references import reference_policies
from fastmarl.train import marl_eval
from fastmarl.train.checkpoint import (
    CheckpointError,
    atomic_write_text,
    env_state_dict,
    latest_checkpoint,
    load_checkpoint,
    load_env_state_dict,
    load_extra_tensors,
    save_checkpoint,
)
from fastmarl.train.history import History
from fastmarl.train.rundir import Logger, RunDir, plot_learning_curve

REFERENCES = "references.json"
ABSOLUTE_SEED = 7919  # the absolute metrics' episodes are seeded apart from the evaluations'

# (num_envs, seed, render) -> a batched env of the run's task
EnvFactory = Callable[[int, int, bool], Any]


@dataclass
class LoopInfo:
    """What a callback sees after each collect/update."""

    step: int
    """env steps done (one step of one env)"""
    iteration: int
    """collect/update cycles done"""
    learner: Learner
    row: dict[str, float] | None
    """the log row written at this step, if one was"""
    run_dir: Path | None
    evaluation: dict[str, float] | None = None
    """the evaluation row of this step (return_det, ...), if the loop evaluated at this step"""


Callback = Callable[[LoopInfo], "bool | None"]


@dataclass
class TrainResult:
    """What ``fastmarl.train`` returns."""

    run_dir: Path | None
    """the run directory (None when the run wrote no files)"""
    global_step: int
    """env steps trained"""
    final_eval: dict[str, float] = field(default_factory=dict)
    """the last evaluation: return_det, return_std_det, ... (and _stoch for stochastic policies)"""
    last_train: dict[str, float] = field(default_factory=dict)
    """the last log row that saw a finished training episode"""
    history: History = field(default_factory=History)
    """every log row (step, time, sps, return, losses, ...): a sequence of dicts stored by column
    (``list(history)`` or ``history.to_list()`` for plain dicts)"""
    evals: list[dict[str, float]] = field(default_factory=list)
    """every evaluation row"""
    learner: Learner | None = None
    """the trained learner (``learner.act`` is the policy)"""
    metrics: dict[str, float] = field(default_factory=dict)
    """summary: return_det (final evaluation), return_train, steps, updates (if counted), time, sps"""
    stopped: bool = False
    """a callback stopped the run before its budget was spent"""


@dataclass
class LoopSettings:
    """The loop's part of a run config (every algorithm's config has these fields)."""

    seed: int
    total_steps: int
    log_interval: int
    eval_interval: int
    eval_episodes: int
    checkpoint_interval: int
    keep_checkpoints: int
    gif: bool
    tensorboard: bool
    progress: bool
    title: str  # "mappo simple_spread_v3"
    info: dict[str, Any]  # written into every checkpoint manifest (algo, env)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # the env's settings (reference policies, marl-eval task)

    @classmethod
    def of(cls, cfg) -> "LoopSettings":
        return cls(seed=cfg.seed, total_steps=cfg.total_steps, log_interval=cfg.log_interval,
                   eval_interval=cfg.eval_interval, eval_episodes=cfg.eval_episodes,
                   checkpoint_interval=cfg.checkpoint_interval, keep_checkpoints=cfg.keep_checkpoints,
                   gif=cfg.gif, tensorboard=cfg.tensorboard, progress=cfg.progress, title=f"{cfg.algo} {cfg.env}",
                   info={"algo": cfg.algo, "env": cfg.env}, env_kwargs=dict(cfg.env_kwargs))


def eval_key(key: str, mode: str) -> str:
    """return -> return_det, return/adversary -> return_det/adversary."""
    head, sep, group = key.partition("/")
    return f"{head}_{mode}{sep}{group}"


def crossed(prev: int, now: int, interval: int) -> bool:
    """A multiple of ``interval`` lies in (prev, now]."""
    return interval > 0 and now // interval > prev // interval


def evaluate(policy, env, modes: tuple[str, ...], seed: int,
             episodes: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Evaluation rows of ``policy`` in each mode ("det", "stoch"), keys suffixed by mode;
    ``episodes`` receives the first mode's per-episode values (``evaluate_policy``)."""
    row: dict[str, float] = {}
    for i, mode in enumerate(modes):
        res = evaluate_policy(policy, env, deterministic=mode == "det", seed=seed,
                              episodes=episodes if i == 0 else None)
        row.update({eval_key(k, mode): v for k, v in res.items()})
    return row


def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None).malloc_trim  # glibc only (musl has none)
    except (AttributeError, OSError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Collect garbage cycles, then return the C heap's free pages to the OS where the libc can
    (glibc ``malloc_trim(0)``); a no-op elsewhere. Tens of milliseconds: call it rarely."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


def _mean(values: list[float | Tensor]) -> float:
    if isinstance(values[0], Tensor):
        return torch.stack(values).mean().item()
    return sum(values) / len(values)


class Loop:
    """One run: ``start()`` (fresh) or ``restore(checkpoint)``, then ``run()``."""

    def __init__(self, s: LoopSettings, learner: Learner, env, make_env: EnvFactory, run: RunDir | None,
                 callback: Callback | None):
        self.s, self.learner, self.env, self.make_env, self.run_dir = s, learner, env, make_env, run
        self.callback = callback
        self.tracker = EpisodeTracker(env.spec, env.num_envs, getattr(env, "device", "cpu"))
        self.step = self.iteration = 0
        self.elapsed_before = 0.0
        self.metrics_acc: dict[str, list[float | Tensor]] = {}
        self.history = History()  # by column: a day-long run's rows stay small, in memory and in checkpoints
        self.evals: list[dict[str, float]] = []
        self.episode_evals: list[dict[str, Any]] = []  # per evaluation: step and per-episode values (marl-eval)
        self.references: dict[str, dict[str, float]] | None = None
        self.last_train: dict[str, float] = {}
        self.logger: Logger | None = None
        self.resumed_step: int | None = None
        self._eval_env = None
        self._train_time = 0.0  # seconds in collect/update since the last log row (its steps/s)
        self._train_steps = 0
        self._next_release = 0.0

    # -- state ---------------------------------------------------------------------------
    def start(self) -> None:
        self.learner.begin(self.env, self.s.seed)

    def restore(self, ckpt: Path, device: torch.device | str = "cpu") -> int:
        """Continue from the checkpoint ``ckpt`` (exactly, when the env can restore its state);
        returns its step."""
        ckpt, device = Path(ckpt), torch.device(device)
        weights, trainer, manifest = load_checkpoint(ckpt, map_location=device)
        learner = self.learner
        algo, loop = trainer["algo"], trainer.get("loop", {})  # no "loop": a checkpoint from before the one loop
        if "ts" in loop and "rollout" not in algo:  # a Q-learning checkpoint from before the one loop
            algo = {**algo, "replay": trainer["replay"], "rollout": {
                "env_steps": manifest["step"], **{k: loop[k] for k in ("ts", "state", "carry", "credit")}}}
            loop = {**loop, "metrics_acc": loop["stats_acc"]}
        learner.load_weights(weights)
        learner.load_trainer_state(algo)
        try:
            learner.load_extra_tensors(lambda name, what: load_extra_tensors(ckpt, name, manifest, device, what=what))
        except ValueError as e:
            raise CheckpointError(f"checkpoint {ckpt}: {e}") from None
        self.step, self.iteration = int(manifest["step"]), int(manifest["iteration"])
        self.elapsed_before = float(manifest["elapsed"])
        if not load_env_state_dict(self.env, trainer["env"]):
            _progress(False).console.print(f"[yellow]warning:[/] {self.s.info['env']} cannot save its state: the resumed run starts from a new reset of its "
                 "envs (a valid run, but not bit-identical to an uninterrupted one)")
            self.learner.begin(self.env, self.s.seed + self.iteration)
        self.tracker.load_state_dict(trainer["tracker"])
        self.metrics_acc = {k: list(v) for k, v in loop.get("metrics_acc", {}).items()}
        try:  # by column; a list of dicts in checkpoints from before History
            self.history = History.from_state(loop.get("history"))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"checkpoint {ckpt}: its log history is damaged ({e})") from None
        self.evals = list(loop.get("evals", []))
        self.episode_evals = list(loop.get("episode_evals", []))  # absent: a checkpoint from before marl-eval files
        self.last_train = dict(loop.get("last_train", {}))
        if "torch_rng" in loop:
            torch.set_rng_state(loop["torch_rng"])
        self.resumed_step = self.step
        return self.step

    def checkpoint(self) -> None:
        if self.run_dir is None:
            return
        a = self.learner
        loop = {"metrics_acc": self.metrics_acc, "history": self.history.state_dict(), "evals": self.evals,
                "episode_evals": self.episode_evals, "last_train": self.last_train, "torch_rng": torch.get_rng_state()}
        trainer = {"algo": a.trainer_state(), "env": env_state_dict(self.env), "tracker": self.tracker.state_dict(),
                   "loop": loop}
        info = {"iteration": self.iteration, "elapsed": self.elapsed(), **self.s.info}
        save_checkpoint(self.run_dir.checkpoints, self.step, a.weights(), trainer, info, keep=self.s.keep_checkpoints,
                        extra=a.extra_tensors() or None)

    def last_checkpoint(self) -> str | None:
        """The latest checkpoint on disk (None without a run directory or before the first)."""
        if self.run_dir is None:
            return None
        try:
            return str(latest_checkpoint(self.run_dir.checkpoints))
        except (CheckpointError, FileNotFoundError, ValueError):
            return None

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train until the budget is spent (or a callback stops the run)."""
        if self.run_dir is not None:
            self.logger = Logger(self.run_dir, self.s.tensorboard, self.resumed_step)
        try:
            return self._run()
        finally:
            if self.logger is not None:
                self.logger.close()
            if self._eval_env is not None and hasattr(self._eval_env, "close"):
                self._eval_env.close()  # its workers, with an env backend that has them
                self._eval_env = None

    def _run(self) -> TrainResult:
        s, learner = self.s, self.learner
        self.t0 = time.perf_counter()
        total = learner.planned_steps
        stopped = False
        with _progress(s.progress) as bar:
            task = bar.add_task(s.title, total=total, completed=self.step, sps="-", ret="-")
            while self.step < total:
                prev, t_train = self.step, time.perf_counter()
                taken = learner.collect(self.env, self.tracker)
                try:
                    metrics = learner.update(prev / total)
                except NonFiniteLoss as e:  # name the last good checkpoint: where to go on from
                    raise e.with_checkpoint(self.last_checkpoint()) from None
                for k, v in metrics.items():  # a value, or a list (one per gradient step)
                    acc = self.metrics_acc.setdefault(k, [])
                    acc.extend(v) if isinstance(v, list) else acc.append(v)
                self._train_time += time.perf_counter() - t_train
                self._train_steps += taken
                self.step += taken
                self.iteration += 1
                last = self.step >= total
                row = None
                if last or crossed(prev, self.step, s.log_interval) or s.log_interval == 0:
                    row = self.log()
                    bar.update(task, completed=self.step, sps=f"{row['sps']:,.0f}", ret=format_headline(row))
                evaluated = None
                if s.eval_episodes and (last or crossed(prev, self.step, s.eval_interval)):
                    self.evaluate(bar)
                    evaluated = self.evals[-1]
                checkpointed = last or crossed(prev, self.step, s.checkpoint_interval)
                if checkpointed:
                    self.checkpoint()
                if (evaluated or (checkpointed and self.run_dir is not None)) and time.perf_counter() > self._next_release:
                    release_memory()  # at most every few seconds: short test runs that evaluate often stay fast
                    self._next_release = time.perf_counter() + 5.0
                if self.callback is not None and self.callback(
                        LoopInfo(self.step, self.iteration, learner, row, self.run_dir.path if self.run_dir else None,
                                 evaluated)):
                    if not checkpointed:
                        self.checkpoint()
                    stopped = not last
                    break
        if s.gif and self.run_dir is not None and not stopped:
            self.gif()
        if self.run_dir is not None and not stopped and s.eval_episodes and self.episode_evals:
            self.write_marl_eval()
        return self.result(stopped)

    def log(self) -> dict[str, float]:
        row = {"step": self.step, "iteration": self.iteration, "time": self.elapsed(),
               "sps": self._train_steps / max(self._train_time, 1e-9), **self.learner.log_info(), **self.tracker.pop()}
        row.update({k: _mean(v) for k, v in self.metrics_acc.items()})
        self.metrics_acc.clear()
        self._train_time, self._train_steps = 0.0, 0
        self.history.append(row)
        if headline(row) or not self.last_train:
            self.last_train = row
        if self.logger is not None:
            self.logger.log(row)
        return row

    def evaluate(self, bar) -> None:
        s = self.s
        if self._eval_env is None:
            self._eval_env = self.make_env(s.eval_episodes, s.seed + EVAL_SEED_OFFSET, False)
        own = getattr(self.learner, "evaluate", None)  # a learner with its own evaluation row (self-play)
        if own is not None:  # (no per-episode values: no marl_eval.json)
            row = {"step": self.step, **own(self._eval_env, s.seed + EVAL_SEED_OFFSET)}
        else:
            episodes: dict[str, list[float]] = {}
            row = {"step": self.step, **evaluate(self.learner, self._eval_env, self.learner.eval_modes,
                                                 s.seed + EVAL_SEED_OFFSET, episodes)}
            self.episode_evals.append({"step": self.step, **{  # float64 tensors: 8 bytes a value, kept all run
                k: torch.tensor(v, dtype=torch.float64) for k, v in episodes.items()}})
        self.evals.append(row)
        now = self.elapsed()
        if self.logger is not None:
            self.logger.log({**row, "time": now}, kind="eval")
            plot_learning_curve(self.run_dir, s.title.replace(" ", " on ", 1), self.reference_returns())
        if own is not None:
            returns = "  ".join(f"{k}={v:.2f}" for k, v in row.items() if k.startswith("return"))
        else:
            names = {"det": "deterministic", "stoch": "stochastic"}
            returns = "; ".join(f"{names.get(m, m)} {format_headline(row, f'return_{m}')}"
                                for m in self.learner.eval_modes)
        bar.console.print(f"step {self.step:>10,}  {now:6.1f}s  eval return: {returns}")

    def reference_returns(self) -> dict[str, dict[str, float]]:
        """name -> headline returns of the env's reference policies (random, scripted), evaluated once
        like the learner and kept in ``references.json``."""
        if self.references is None:
            path = self.run_dir.path / REFERENCES
            if path.is_file():
                self.references = json.loads(path.read_text())
            else:
                seed, self.references = self.s.seed + EVAL_SEED_OFFSET, {}
                for name, pol in reference_policies(self._eval_env, self.s.env_kwargs).items():
                    try:
                        self.references[name] = headline(evaluate_policy(pol, self._eval_env, True, seed))
                    except (RuntimeError, ValueError, TypeError, IndexError) as e:  # a line on a plot: never fatal
                        _progress(False).console.print(f"[yellow]warning:[/] the {name} reference policy could not "
                                                       f"play {self.s.info['env']} ({e}); the curve omits it")
                atomic_write_text(path, json.dumps(self.references, indent=2) + "\n")
        return self.references

    def write_marl_eval(self) -> Path:
        """``marl_eval.json``: every evaluation's per-episode values, and the final policy's over
        ``ABSOLUTE_FACTOR`` x ``eval_episodes`` fresh episodes (the absolute metrics)."""
        absolute: dict[str, list[float]] = {}
        for k in range(marl_eval.ABSOLUTE_FACTOR):
            part: dict[str, list[float]] = {}
            evaluate_policy(self.learner, self._eval_env, True, self.s.seed + EVAL_SEED_OFFSET + ABSOLUTE_SEED + k,
                            episodes=part)
            for key, values in part.items():
                absolute.setdefault(key, []).extend(values)
        info = self.s.info
        return marl_eval.write_run(self.run_dir.path, info["env"], self.s.env_kwargs, info["algo"], self.s.seed,
                                   self.episode_evals, absolute)

    def gif(self) -> None:
        seed = self.s.seed + EVAL_SEED_OFFSET
        env = self.make_env(1, seed, True)
        if not hasattr(env, "render"):
            return
        record_episode(self.learner, env, self.run_dir.gif, deterministic=True, seed=seed)

    def result(self, stopped: bool) -> TrainResult:
        final = self.evals[-1] if self.evals else {}
        total_time = self.elapsed()
        metrics = {"steps": float(self.step), "time": total_time, "sps": self.step / max(total_time, 1e-9)}
        metrics.update(headline(final, "return_det"))  # per group on a competitive env
        metrics.update({k.replace("return", "return_train", 1): v for k, v in headline(self.last_train).items()})
        if "updates" in (info := self.learner.log_info()):
            metrics["updates"] = float(info["updates"])
        return TrainResult(self.run_dir.path if self.run_dir is not None else None, self.step, final, self.last_train,
                           self.history, self.evals, self.learner, metrics, stopped)


def run_loop(s: LoopSettings, learner: Learner, env, make_env: EnvFactory, *, run: RunDir | None = None,
             resume_from: Path | None = None, device: torch.device | str = "cpu",
             callback: Callback | None = None) -> TrainResult:
    """Train ``learner`` on ``env`` (see the module docstring): ``Loop(...)``, then
    ``restore(resume_from)`` or ``start()``, then ``run()``."""
    loop = Loop(s, learner, env, make_env, run, callback)
    if resume_from is not None:
        loop.restore(resume_from, device)
    else:
        loop.start()
    return loop.run()


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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[sps]} steps/s"), TextColumn("return {task.fields[ret]}"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
