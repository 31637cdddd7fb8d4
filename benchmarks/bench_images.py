"""Image observations, side by side: the bare PettingZoo env vs `fastmarl train` on it.

    python benchmarks/bench_images.py                      # pistonball_v6, ~15 minutes on one thread
    python benchmarks/bench_images.py --total-steps 2000   # a quick look

1. The bare env: ``pettingzoo.butterfly.pistonball_v6.parallel_env()`` stepped with uniform random
   actions on one thread: its env-steps/s (one step = every agent acting) and the return per agent
   of the random policy (mean and 95% CI over its episodes).
2. ``fastmarl train --env pz:pettingzoo.butterfly.pistonball_v6 --threads 1`` with only the budget and
   the evaluation interval set (``--total-steps``, ``--eval-interval``), in a subprocess: its training
   env-steps/s (collect + update, evaluation excluded; fastmarl's ``sps``), its peak resident memory
   and its evaluation returns along the way.
3. The bare env again, since a shared machine's load changes during the run.

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


def bare_env(steps: int, seed: int) -> dict:
    """Step the env ``steps`` times with uniform random actions; returns its rate and random returns."""
    import importlib

    import torch

    torch.set_num_threads(1)
    env = importlib.import_module(ENV).parallel_env()
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for a in env.possible_agents:
        env.action_space(a).seed(int(rng.integers(2 ** 31)))
    returns, ep = [], {a: 0.0 for a in env.agents}
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, rew, term, trunc, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
        for a, r in rew.items():
            ep[a] += r
        if not env.agents:
            returns.append(float(np.mean(list(ep.values()))))
            obs, _ = env.reset()
            ep = {a: 0.0 for a in env.agents}
    dt = time.perf_counter() - t0
    env.close()
    r = np.asarray(returns)
    ci = 1.96 * r.std(ddof=1) / np.sqrt(len(r)) if len(r) > 1 else float("nan")
    return {"steps": steps, "seconds": dt, "steps_per_s": steps / dt, "random_return": float(r.mean()) if len(r)
            else float("nan"), "random_return_ci95": float(ci), "random_episodes": len(r)}


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
    ap.add_argument("--env-steps", type=int, default=1000, help="bare env steps, before and after training")
    ap.add_argument("--total-steps", type=int, default=12_000, help="training env steps")
    ap.add_argument("--eval-interval", type=int, default=4_000, help="training env steps between evaluations")
    ap.add_argument("--runs-dir", default="runs/bench_images")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    before = bare_env(args.env_steps, args.seed)
    train = train_run(args)
    after = bare_env(args.env_steps, args.seed + 1)
    load1 = os.getloadavg()[0]
    bare = (before["steps_per_s"] + after["steps_per_s"]) / 2
    result = {"env": ENV, "cpus": os.cpu_count(), "load_average": [load0, load1], "bare_before": before,
              "bare_after": after, "train": train, "train_over_bare": train["train_steps_per_s"] / bare}
    out = Path(args.runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    rnd = [b["random_return"] for b in (before, after)]
    print(f"load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs; {train['command']}")
    print(f"settings: num_envs {train['num_envs']}, eval_episodes {train['eval_episodes']}, {train['images']}")
    print("\n| | env-steps/s |\n|---|---:|")
    print(f"| bare env, random actions (before / after) | {before['steps_per_s']:.1f} / {after['steps_per_s']:.1f} |")
    print(f"| fastmarl train (collect + update) | {train['train_steps_per_s']:.1f} "
          f"({result['train_over_bare']:.0%} of the bare env) |")
    print(f"\npeak resident memory of fastmarl train: {train['peak_rss_gib']:.2f} GiB; wall {train['wall_seconds']:.0f} s")
    print(f"random policy: return per agent {rnd[0]:.2f} ± {before['random_return_ci95']:.2f} "
          f"({before['random_episodes']} episodes) / {rnd[1]:.2f} ± {after['random_return_ci95']:.2f} "
          f"({after['random_episodes']})")
    print("\n| step | return det (std) | return stoch (std) |\n|---:|---:|---:|")
    for e in train["evals"]:
        print(f"| {e['step']:,} | {e['return_det']:.2f} ({e['return_std_det']:.2f}) | "
              f"{e['return_stoch']:.2f} ({e['return_std_stoch']:.2f}) |")


if __name__ == "__main__":
    main()
