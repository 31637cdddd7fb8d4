"""BenchMARL's MAPPO, QMIX or VDN on its PettingZoo simple_spread task, for a fixed wall-time budget.

Runs inside benchmarks/.venv-benchmarl (``bash benchmarks/setup_benchmarl.sh``);
benchmarks/bench_training.py calls it. The task is PettingZoo's
``simple_spread_v3`` (``pettingzoo.mpe``) with N=3, local_ratio 0.5,
max_cycles 25 (BenchMARL's own yaml says 100: overridden to match
fastmarl/mpe2's default) and discrete actions. Algorithm, model and experiment
settings are BenchMARL's defaults from its yaml files, except: discrete
actions (``prefer_continuous_actions=False``), no evaluation, rendering,
checkpoints, loggers or json (they cost wall time and are not needed here), and
``max_n_frames`` large, since the wall-time budget ends the run. For the
off-policy algorithms (QMIX, VDN) ``exploration_anneal_frames`` is set
explicitly (``--exploration-anneal-frames``, 50,000 by default, fastmarl's
``epsilon_anneal_steps``): BenchMARL's default anneals over a third of
``max_n_frames``, which with the large ``max_n_frames`` would keep epsilon near
its start for the whole budget.

Per training iteration it writes one JSON line to ``--out``: env steps
("frames", one step of one env with every agent acting) so far, seconds since
the training loop started, and the iteration's mean training-episode return as
BenchMARL computes it (``Logger.log_collection``: each agent's reward summed
over its episode, mean over the agents, mean over the episodes that ended in the
batch), which is fastmarl's per-agent convention.

    benchmarks/.venv-benchmarl/bin/python benchmarks/benchmarl/run_benchmarl.py --budget 300 --out runs/bench/benchmarl.jsonl
    benchmarks/.venv-benchmarl/bin/python benchmarks/benchmarl/run_benchmarl.py --algo qmix --out runs/bench/benchmarl_qmix.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from benchmarl.algorithms import MappoConfig, QmixConfig, VdnConfig
from benchmarl.environments import PettingZooTask
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.experiment.callback import Callback
from benchmarl.models.mlp import MlpConfig

TASK = {"task": "simple_spread_v3", "N": 3, "local_ratio": 0.5, "max_cycles": 25}
ALGOS = {"mappo": MappoConfig, "qmix": QmixConfig, "vdn": VdnConfig}


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
    ap.add_argument("--algo", choices=sorted(ALGOS), default="mappo")
    ap.add_argument("--exploration-anneal-frames", type=int, default=50_000,
                    help="off-policy algorithms: frames over which epsilon decays (BenchMARL's default: max_n_frames / 3)")
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
    config.exploration_anneal_frames = args.exploration_anneal_frames  # read by the off-policy algorithms only
    save = args.save_folder or args.out.parent / "benchmarl_experiment"
    save.mkdir(parents=True, exist_ok=True)
    config.save_folder = str(save.resolve())

    recorder = Recorder(args.out, args.budget)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t_setup = time.perf_counter()
    experiment = Experiment(task=PettingZooTask.SIMPLE_SPREAD.get_task(config=dict(TASK)),
                            algorithm_config=ALGOS[args.algo].get_from_yaml(), model_config=MlpConfig.get_from_yaml(),
                            critic_model_config=MlpConfig.get_from_yaml(), seed=args.seed, config=config,
                            callbacks=[recorder])
    setup_s = time.perf_counter() - t_setup
    on = experiment.on_policy
    print(f"BenchMARL {args.algo} experiment set up in {setup_s:.1f}s; frames per batch "
          f"{config.collected_frames_per_batch(on)}, {config.n_envs_per_worker(on)} envs, "
          f"lr {config.lr}; training for {args.budget:.0f}s", flush=True)
    recorder.start()
    try:
        experiment.run()
    except BudgetReached:
        pass
    meta = {"algo": args.algo, "setup_s": setup_s, "budget_s": args.budget, "threads": args.threads, "seed": args.seed,
            "task": TASK, "frames_per_batch": config.collected_frames_per_batch(on),
            "n_envs": config.n_envs_per_worker(on), "lr": config.lr,
            "minibatch_size": config.on_policy_minibatch_size, "n_minibatch_iters": config.on_policy_n_minibatch_iters}
    if not on:
        meta.update({"n_optimizer_steps": config.off_policy_n_optimizer_steps,
                     "train_batch_size": config.off_policy_train_batch_size,
                     "memory_size": config.off_policy_memory_size, "gamma": config.gamma,
                     "eps_init": config.exploration_eps_init, "eps_end": config.exploration_eps_end,
                     "exploration_anneal_frames": config.exploration_anneal_frames,
                     "soft_target_update": config.soft_target_update, "polyak_tau": config.polyak_tau})
    args.out.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
