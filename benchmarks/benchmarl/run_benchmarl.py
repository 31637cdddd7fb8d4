"""BenchMARL's MAPPO on its PettingZoo simple_spread task, for a fixed wall-time budget.

Runs inside benchmarks/.venv-benchmarl (``bash benchmarks/setup_benchmarl.sh``);
benchmarks/bench_training.py calls it. The task is PettingZoo's
``simple_spread_v3`` (``pettingzoo.mpe``) with N=3, local_ratio 0.5,
max_cycles 25 (BenchMARL's own yaml says 100: overridden to match
fastmarl/mpe2's default) and discrete actions. Algorithm, model and experiment
settings are BenchMARL's defaults from its yaml files, except: discrete
actions (``prefer_continuous_actions=False``), no evaluation, rendering,
checkpoints, loggers or json (they cost wall time and are not needed here), and
``max_n_frames`` large, since the wall-time budget ends the run.

Per training iteration it writes one JSON line to ``--out``: env steps
("frames", one step of one env with every agent acting) so far, seconds since
the training loop started, and the iteration's mean training-episode return as
BenchMARL computes it (``Logger.log_collection``: each agent's reward summed
over its episode, mean over the agents, mean over the episodes that ended in the
batch), which is fastmarl's per-agent convention.

    benchmarks/.venv-benchmarl/bin/python benchmarks/benchmarl/run_benchmarl.py --budget 300 --out runs/bench/benchmarl.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from benchmarl.algorithms import MappoConfig
from benchmarl.environments import PettingZooTask
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.experiment.callback import Callback
from benchmarl.models.mlp import MlpConfig

TASK = {"task": "simple_spread_v3", "N": 3, "local_ratio": 0.5, "max_cycles": 25}


class BudgetReached(Exception):
    """Raised from the callback to end the run once the wall-time budget is spent."""


class Recorder(Callback):
    """Writes (frames, seconds, mean episode return) after each collected batch; stops at the budget."""

    def __init__(self, out: Path, budget_s: float):
        super().__init__()
        self.out, self.budget_s = str(out), budget_s
        self.t0: float | None = None

    def start(self) -> None:
        self.t0 = time.perf_counter()
        Path(self.out).write_text("")

    def on_batch_collected(self, batch) -> None:
        exp = self.experiment
        elapsed = time.perf_counter() - self.t0
        row = {"step": exp.total_frames, "time": elapsed, "return": float(exp.mean_return),
               "iteration": exp.n_iters_performed + 1}
        with open(self.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"frames {row['step']:>8,}  {elapsed:7.1f}s  {row['step'] / elapsed:6.0f} frames/s  "
              f"return per agent {row['return']:.2f}", flush=True)
        if elapsed >= self.budget_s:
            raise BudgetReached(elapsed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=300.0, help="wall-time budget of the training loop (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", type=Path, required=True, help="JSON-lines output, one row per iteration")
    ap.add_argument("--save-folder", type=Path, default=None, help="BenchMARL's experiment folder (default: next to --out)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    config = ExperimentConfig.get_from_yaml()
    config.prefer_continuous_actions = False
    config.sampling_device = config.train_device = config.buffer_device = "cpu"
    config.max_n_frames = 10**9
    config.max_n_iters = None
    config.evaluation = False
    config.render = False
    config.loggers = []
    config.create_json = False
    config.checkpoint_interval = 0
    config.checkpoint_at_end = False
    save = args.save_folder or args.out.parent / "benchmarl_experiment"
    save.mkdir(parents=True, exist_ok=True)
    config.save_folder = str(save.resolve())

    recorder = Recorder(args.out, args.budget)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t_setup = time.perf_counter()
    experiment = Experiment(task=PettingZooTask.SIMPLE_SPREAD.get_task(config=dict(TASK)),
                            algorithm_config=MappoConfig.get_from_yaml(), model_config=MlpConfig.get_from_yaml(),
                            critic_model_config=MlpConfig.get_from_yaml(), seed=args.seed, config=config,
                            callbacks=[recorder])
    setup_s = time.perf_counter() - t_setup
    print(f"BenchMARL experiment set up in {setup_s:.1f}s; frames per batch "
          f"{config.on_policy_collected_frames_per_batch}, {config.on_policy_n_envs_per_worker} envs, "
          f"lr {config.lr}; training for {args.budget:.0f}s", flush=True)
    recorder.start()
    try:
        experiment.run()
    except BudgetReached:
        pass
    meta = {"setup_s": setup_s, "budget_s": args.budget, "threads": args.threads, "seed": args.seed, "task": TASK,
            "frames_per_batch": config.on_policy_collected_frames_per_batch,
            "n_envs": config.on_policy_n_envs_per_worker, "lr": config.lr,
            "minibatch_size": config.on_policy_minibatch_size, "n_minibatch_iters": config.on_policy_n_minibatch_iters}
    args.out.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
