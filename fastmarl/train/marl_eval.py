"""Results in the JSON layout of marl-eval (InstaDeep), the one BenchMARL and Mava export.

Every run directory gets ``marl_eval.json`` at the end of its run (written by the training loop,
when the run evaluates), and experiment scripts merge their runs' files into one (``merge``), so
the results load into marl-eval's ``data_process_pipeline`` and plotting tools as they are::

    {environment: {task: {algorithm: {"seed_<seed>": {
        "step_0":   {"step_count": <env steps>, "return": [one value per evaluation episode], ...},
        ...
        "step_<k-1>": {...},
        "absolute_metrics": {"return": [10 x as many values], ...}}}}}}

- environment: the env's family in fastmarl's registry (``mpe``, ``applications``, ``matrix``,
  ``rware``, ...); for a ``pz:`` env, the package of its module (``pz:mpe2.simple_spread_v3`` ->
  ``mpe2``). Task: the env id (the module's last name for ``pz:``), with its ``env_kwargs`` appended
  when the run set any (``simple_spread_v3__n=5``): another setting is another task. Algorithm: the
  ``fastmarl train --algo``. Names are lower case (marl-eval lower-cases the names it looks up).
- step_i: the i-th evaluation of the run (``eval_interval``), in order, with ``step_count`` its env
  step; each metric a list with one entry per evaluation episode of the deterministic policy:
  ``return`` (per agent, mpe2's convention), or on a competitive env each group's own
  ``return_<group>`` (never a mean over opposing teams), and ``episode_length``.
- absolute_metrics (last, as marl-eval expects): the same metrics over ``ABSOLUTE_FACTOR`` (10) x
  ``eval_episodes`` fresh episodes of the final policy. The protocol of Gorsane et al. (2022) asks for
  the best policy seen during training there; fastmarl evaluates the final one (runs keep their
  newest checkpoints, not the best), so these numbers are the final policy's.

Every step and the absolute metrics hold the same metric names, and every run of one experiment
the same number of steps: marl-eval's ``DiagnoseData`` checks both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastmarl.envs.registry import env_family
from fastmarl.train.checkpoint import atomic_write_text

FILE = "marl_eval.json"
ABSOLUTE = "absolute_metrics"
ABSOLUTE_FACTOR = 10  # the absolute metrics: 10 x eval_episodes episodes of the final policy
PETTINGZOO_PREFIX = "pz:"


def names(env: str, env_kwargs: dict[str, Any] | None = None) -> tuple[str, str]:
    """(environment, task) of a run's ``env`` and ``env_kwargs``, lower case (see the module docstring)."""
    if env.startswith(PETTINGZOO_PREFIX):
        module = env[len(PETTINGZOO_PREFIX):]
        environment, _, task = module.rpartition(".")
        environment = environment or "pettingzoo"
    else:
        environment, task = env_family(env) or "fastmarl", env
    if env_kwargs:
        task += "__" + ",".join(f"{k}={v}" for k, v in sorted(env_kwargs.items()))
    return environment.lower(), task.lower()


def metric_name(key: str) -> str:
    """An evaluation key as a marl-eval metric name: ``return/adversary`` -> ``return_adversary``."""
    return key.replace("/", "_").lower()


def run_record(evaluations: list[dict[str, Any]], absolute: dict[str, list[float]]) -> dict[str, Any]:
    """One seed's entry: ``evaluations`` are ``{"step": env steps, metric: [per-episode values]}`` in
    order, ``absolute`` the final policy's metrics over 10x the episodes."""
    record: dict[str, Any] = {}
    for i, ev in enumerate(evaluations):
        record[f"step_{i}"] = {"step_count": int(ev["step"]),
                               **{metric_name(k): [float(x) for x in v] for k, v in ev.items() if k != "step"}}
    record[ABSOLUTE] = {metric_name(k): [float(x) for x in v] for k, v in absolute.items()}
    return record


def layout(environment: str, task: str, algorithm: str, seed: int, record: dict[str, Any]) -> dict[str, Any]:
    return {environment: {task: {algorithm.lower(): {f"seed_{seed}": record}}}}


def write_run(path: Path, env: str, env_kwargs: dict[str, Any], algo: str, seed: int,
              evaluations: list[dict[str, Any]], absolute: dict[str, list[float]]) -> Path:
    """Write one run's ``marl_eval.json`` (path: the run directory)."""
    environment, task = names(env, env_kwargs)
    out = Path(path) / FILE
    atomic_write_text(out, json.dumps(layout(environment, task, algo, seed, run_record(evaluations, absolute)))
                      + "\n")
    return out


def merge(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One marl-eval dict from several (e.g. every run's ``marl_eval.json``); the same (environment,
    task, algorithm, seed) twice is a ValueError naming it."""
    out: dict[str, Any] = {}
    for part in parts:
        for environment, tasks in part.items():
            for task, algos in tasks.items():
                for algo, seeds in algos.items():
                    slot = out.setdefault(environment, {}).setdefault(task, {}).setdefault(algo, {})
                    for seed, record in seeds.items():
                        if seed in slot:
                            raise ValueError(f"marl-eval results: {environment}/{task}/{algo}/{seed} appears twice "
                                             "(two runs of the same algorithm, task and seed)")
                        slot[seed] = record
    return out


def merge_files(paths: Iterable[str | Path], out: str | Path) -> Path:
    """Merge the ``marl_eval.json`` files ``paths`` into ``out``; returns ``out``."""
    data = merge(json.loads(Path(p).read_text()) for p in paths)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(data) + "\n")
    return out


def merge_runs(folder: str | Path, out: str | Path | None = None) -> Path | None:
    """Merge the ``marl_eval.json`` of every run directory directly inside ``folder`` (an experiment's
    runs) into ``out`` (default ``folder/marl_eval.json``); None when no run there has one."""
    folder = Path(folder)
    out = Path(out) if out is not None else folder / FILE
    paths = sorted(p for p in folder.glob(f"*/{FILE}") if p.resolve() != out.resolve())
    return merge_files(paths, out) if paths else None
