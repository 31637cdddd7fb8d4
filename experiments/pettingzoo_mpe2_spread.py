"""MAPPO on mpe2's own simple_spread_v3, through ``from_pettingzoo``; and the same run on fastmarl's env.

    python experiments/pettingzoo_mpe2_spread.py                     # 1M env steps, seed 0
    python experiments/pettingzoo_mpe2_spread.py --total-steps 5e5 --no-native

The trainer takes a PettingZoo env module as ``env="pz:mpe2.simple_spread_v3"``
(``fastmarl train --env pz:mpe2.simple_spread_v3 --env-kwargs N=3``): it builds
``from_pettingzoo(lambda: mpe2.simple_spread_v3.parallel_env(**env_kwargs), num_envs)``,
whose ``num_envs`` mpe2 envs step one after another in Python, so training is
bounded by mpe2's speed. Everything else is the default ``fastmarl train``
MAPPO configuration. With ``--native`` (default) the same config, seed and
budget then trains on fastmarl's batched simple_spread_v3, for comparison: the
two envs follow the same rules (tests/test_parity_spread.py), so the curves
should agree up to seed noise, and the difference in wall time is the cost of
stepping mpe2 in Python. Finally each final policy is evaluated, deterministic, on
*both* envs with ``--cross-eval-episodes`` fresh episodes: equal scores on the two
envs say the envs agree, whatever the policies' own differences.

Note: the results in experiments/README.md were measured when ``from_pettingzoo``
seeded env ``i`` with ``seed + i`` (neighbouring seeds then shared most env start
states); it now derives independent per-env seeds (``sub_seed``).

Return is per agent (mean over agents of each agent's summed episode reward;
uniform random policy about -26). Writes runs under ``--runs-dir`` (default
runs/pettingzoo_mpe2_spread) and ``summary.json`` there; prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch


def _parse_count(s: str) -> int:
    v = float(s)
    if v != int(v):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {s}")
    return int(v)


def _rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def train_one(env: str, args, runs_dir: Path) -> dict:
    from fastmarl.config import TrainConfig
    from fastmarl.train import train

    name = "mpe2_pz" if env.startswith("pz:") else "fastmarl_native"
    run_dir = runs_dir / name
    if args.reuse and run_dir.is_dir():
        rows = _rows(run_dir / "metrics.csv") if (run_dir / "metrics.csv").is_file() else []
        if rows and rows[-1]["step"] >= args.total_steps and (run_dir / "eval.csv").is_file():
            print(f"reusing the finished run {run_dir}")
            return summarise_run(env, run_dir, wall=None)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = TrainConfig(algo="mappo", env=env, env_kwargs={"N": 3, "local_ratio": 0.5, "max_cycles": 25},
                      total_steps=args.total_steps, num_envs=args.num_envs, seed=args.seed,
                      eval_interval=args.eval_interval, eval_episodes=100, checkpoint_interval=0, keep_checkpoints=1,
                      name=name, runs_dir=str(runs_dir), gif=False, tensorboard=False, progress=True,
                      threads=args.threads)
    t0 = time.perf_counter()
    res = train(cfg)
    return summarise_run(env, res.run_dir, wall=time.perf_counter() - t0)


def summarise_run(env: str, run_dir: Path, wall: float | None) -> dict:
    train_rows = [r for r in _rows(run_dir / "metrics.csv") if "return" in r]
    evals = _rows(run_dir / "eval.csv")
    last = train_rows[-5:]  # ~1,000 training episodes at the end
    steps = int(train_rows[-1]["step"])
    return {
        "env": env, "run_dir": str(run_dir), "env_steps": steps, "wall_s": wall,
        "train_time_s": train_rows[-1]["time"], "steps_per_s": steps / train_rows[-1]["time"],
        "first_train_return": train_rows[0]["return"],
        "last_train_return": float(np.mean([r["return"] for r in last])),
        "evals": [{"step": int(r["step"]), "time": r["time"], "det": r["return_det"], "stoch": r["return_stoch"]}
                  for r in evals],
        "train_curve": [[int(r["step"]), r["time"], r["return"]] for r in train_rows],
    }


def cross_evaluate(results: dict, episodes: int, seed: int) -> dict:
    """Each final policy, deterministic, on both envs: ``episodes`` episodes from start states drawn with
    ``seed`` (not the runs' evaluation seeds). Tells a difference between the envs from one in the policies."""
    import dataclasses

    from fastmarl.envs.episodes import evaluate_policy
    from fastmarl.train.runner import _make_env, load_run

    out = {}
    for key, r in results.items():
        policy, cfg, _, _ = load_run(r["run_dir"], num_envs=1)
        out[key] = {}
        for env_key, env_id in (("mpe2", "pz:mpe2.simple_spread_v3"), ("native", "simple_spread_v3")):
            env = _make_env(dataclasses.replace(cfg, env=env_id), episodes, seed)
            out[key][env_key] = evaluate_policy(policy, env, deterministic=True, seed=seed)["return"]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--total-steps", type=_parse_count, default=1_000_000)
    ap.add_argument("--num-envs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--eval-interval", type=_parse_count, default=250_000)
    ap.add_argument("--native", action=argparse.BooleanOptionalAction, default=True,
                    help="also train on fastmarl's simple_spread_v3 with the same settings")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/pettingzoo_mpe2_spread"))
    ap.add_argument("--cross-eval-episodes", type=int, default=1000,
                    help="evaluate every final policy on both envs with this many fresh episodes (0: skip)")
    ap.add_argument("--reuse", action="store_true", help="keep runs already finished in --runs-dir")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.total_steps:,} env steps, {args.num_envs} envs, "
          f"seed {args.seed}, {args.threads} torch thread(s)")
    results = {"mpe2": train_one("pz:mpe2.simple_spread_v3", args, args.runs_dir)}
    if args.native:
        results["native"] = train_one("simple_spread_v3", args, args.runs_dir)
    cross = cross_evaluate(results, args.cross_eval_episodes, seed=777_000 + args.seed) if args.cross_eval_episodes else {}
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    (args.runs_dir / "summary.json").write_text(json.dumps({**results, "cross_eval": cross}, indent=2) + "\n")

    print("\nMAPPO on simple_spread_v3 (N=3), return per agent; eval = 100 episodes, deterministic / stochastic")
    cols = list(results)
    print(f"{'env steps':>10} | " + " | ".join(f"{c + ' eval':>22}" for c in cols))
    for i, e in enumerate(results["mpe2"]["evals"]):
        cells = []
        for c in cols:
            ev = results[c]["evals"][i] if i < len(results[c]["evals"]) else None
            cells.append(f"{ev['det']:7.2f} / {ev['stoch']:7.2f} @{ev['time']:5.0f}s" if ev else " " * 22)
        print(f"{e['step']:>10,} | " + " | ".join(cells))
    for c, r in results.items():
        print(f"{c:>7}: training return {r['first_train_return']:.2f} (first iteration) -> "
              f"{r['last_train_return']:.2f} (mean of the last 5 iterations); {r['env_steps']:,} steps in "
              f"{r['train_time_s']:.0f} s = {r['steps_per_s']:,.0f} env-steps/s")
    for c, row in cross.items():
        print(f"final policy trained on {c:>6}, {args.cross_eval_episodes:,} fresh episodes, deterministic: "
              f"{row['mpe2']:.2f} on mpe2, {row['native']:.2f} on fastmarl's env")
    print(f"wrote {args.runs_dir / 'summary.json'}")


if __name__ == "__main__":
    main()
