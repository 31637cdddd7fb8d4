"""Image observations, side by side: the bare PettingZoo env vs `fastmarl train` on it.

    python benchmarks/bench_images.py                      # pistonball_v6, ~15 minutes on one thread
    python benchmarks/bench_images.py --rounds 3 --total-steps 0   # the speed comparison alone

1. Speed, side by side in this process on one thread, alternating in chunks so that a shared
   machine's changing load hits both alike: ``chunk`` steps of the bare env
   (``pettingzoo.butterfly.pistonball_v6.parallel_env()``, uniform random actions; one step = every
   agent acting), then one training iteration of the learner ``fastmarl train`` builds with the
   image defaults (collect ``num_envs * num_steps`` env steps, update), ``--rounds`` times; the
   medians of both rates. The bare env's episodes give the random policy's return per agent.
2. ``fastmarl train --env pz:pettingzoo.butterfly.pistonball_v6 --threads 1`` with only the budget and
   the evaluation interval set (``--total-steps``, ``--eval-interval``), in a subprocess: its own
   training env-steps/s (collect + update; fastmarl's ``sps``), its peak resident memory and its
   evaluation returns along the way.

Writes ``runs/bench_images/result.json`` and prints a markdown table (docs/images.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ENV = "pettingzoo.butterfly.pistonball_v6"


def side_by_side(rounds: int, seed: int) -> dict:
    """Alternate bare-env chunks and training iterations (see the module docstring)."""
    import importlib

    import torch

    from fastmarl.config import TrainConfig
    from fastmarl.train.runner import _checked_on_one_env, _make_env, build_learner

    torch.set_num_threads(1)
    cfg = _checked_on_one_env(TrainConfig(env=f"pz:{ENV}", threads=1, seed=seed))  # the image defaults
    venv = _make_env(cfg, cfg.num_envs, seed)
    learner = build_learner(cfg, venv.spec, "cpu")
    learner.begin(venv, seed)
    chunk = cfg.num_envs * cfg.ppo.num_steps
    env = importlib.import_module(ENV).parallel_env()
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for a in env.possible_agents:
        env.action_space(a).seed(int(rng.integers(2 ** 31)))
    returns, ep = [], {a: 0.0 for a in env.agents}
    bare, trained = [], []
    for r in range(rounds + 1):  # round 0 warms both up (first allocations) and is not counted
        t0 = time.perf_counter()
        for _ in range(chunk):
            _, rew, _, _, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
            for a, x in rew.items():
                ep[a] += x
            if not env.agents:
                returns.append(float(np.mean(list(ep.values()))))
                env.reset()
                ep = {a: 0.0 for a in env.agents}
        t1 = time.perf_counter()
        learner.collect(venv)
        learner.update(r / (rounds + 1))
        t2 = time.perf_counter()
        if r:
            bare.append(chunk / (t1 - t0))
            trained.append(chunk / (t2 - t1))
    env.close()
    venv.close()
    ret = np.asarray(returns)
    return {"rounds": rounds, "chunk_steps": chunk, "num_envs": cfg.num_envs, "bare_steps_per_s": bare,
            "train_steps_per_s": trained, "bare_median": float(np.median(bare)),
            "train_median": float(np.median(trained)), "ratio_median": float(np.median(np.divide(trained, bare))),
            "random_return": float(ret.mean()), "random_return_ci95": float(1.96 * ret.std(ddof=1) / np.sqrt(len(ret))),
            "random_episodes": len(ret)}


def train_run(args) -> dict:
    out = Path(args.runs_dir)
    name = f"pistonball_{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [sys.executable, "-m", "fastmarl.cli", "train", "--env", f"pz:{ENV}", "--threads", "1",
           "--total-steps", str(args.total_steps), "--eval-interval", str(args.eval_interval),
           "--runs-dir", str(out), "--name", name, "--no-progress", "--no-gif"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"fastmarl train failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    run = out / name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    evals = list(csv.DictReader((run / "eval.csv").open()))
    cfg = json.loads((run / "config.json").read_text())
    sps = [float(r["sps"]) for r in rows]
    return {"command": " ".join(cmd[2:]), "run_dir": str(run), "wall_seconds": wall, "peak_rss_gib": peak_kib / 2 ** 20,
            "train_steps_per_s": sps[-1], "num_envs": cfg["num_envs"], "eval_episodes": cfg["eval_episodes"],
            "images": cfg["ppo"]["images"], "stderr_note": [ln for ln in proc.stderr.splitlines()
                                                            if "image observations" in ln],
            "evals": [{"step": int(e["step"]), "return_det": float(e["return_det"]),
                       "return_std_det": float(e["return_std_det"]), "return_stoch": float(e["return_stoch"]),
                       "return_std_stoch": float(e["return_std_stoch"]), "episodes": int(float(e["episodes_det"]))}
                      for e in evals]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="bare-env chunks and training iterations, alternated")
    ap.add_argument("--total-steps", type=int, default=12_000, help="env steps of the `fastmarl train` run")
    ap.add_argument("--eval-interval", type=int, default=4_000, help="training env steps between evaluations")
    ap.add_argument("--runs-dir", default="runs/bench_images")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    speed = side_by_side(args.rounds, args.seed)
    train = train_run(args) if args.total_steps else None
    load1 = os.getloadavg()[0]
    result = {"env": ENV, "cpus": os.cpu_count(), "load_average": [load0, load1], "side_by_side": speed,
              "train": train}
    out = Path(args.runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs (shared)")
    print(f"side by side, {speed['rounds']} rounds of {speed['chunk_steps']} env steps each, one thread "
          f"(num_envs {speed['num_envs']}):")
    print("\n| | env-steps/s, median (min-max) |\n|---|---:|")
    for name, key in (("bare env, random actions", "bare_steps_per_s"), ("fastmarl training (collect + update)",
                                                                         "train_steps_per_s")):
        v = speed[key]
        print(f"| {name} | {np.median(v):.1f} ({min(v):.1f}-{max(v):.1f}) |")
    print(f"\ntraining / bare env, median of the rounds' ratios: {speed['ratio_median']:.0%}")
    print(f"random policy: return per agent {speed['random_return']:.2f} ± {speed['random_return_ci95']:.2f} "
          f"(95% CI, {speed['random_episodes']} episodes)")
    if train is None:
        return
    print(f"\n{train['command']}\nsettings: num_envs {train['num_envs']}, eval_episodes {train['eval_episodes']}, "
          f"{train['images']}")
    print(f"training env-steps/s (fastmarl's sps): {train['train_steps_per_s']:.1f}; peak resident memory "
          f"{train['peak_rss_gib']:.2f} GiB; wall {train['wall_seconds']:.0f} s")
    print("\n| step | return det (std) | return stoch (std) |\n|---:|---:|---:|")
    for e in train["evals"]:
        print(f"| {e['step']:,} | {e['return_det']:.2f} ({e['return_std_det']:.2f}) | "
              f"{e['return_stoch']:.2f} ({e['return_std_stoch']:.2f}) |")


if __name__ == "__main__":
    main()
