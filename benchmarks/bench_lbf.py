"""fastmarl's batched LBF vs the reference ``lbforaging==2.0.0``: env-steps/s side by side, in one run.

Usage::

    python benchmarks/bench_lbf.py                                   # 3 tasks; 1, 64, 1024, 8192 envs
    python benchmarks/bench_lbf.py --envs Foraging-8x8-2p-2f-coop-v3 --num-envs 1 64 --seconds 1   # quick look

The protocol of ``bench_rware.py``: one process pinned to one core with one torch thread;
per configuration fastmarl eager, fastmarl ``compile=True`` and the reference are measured
one after another (so drift of a shared machine hits all alike; read the ratios). The
reference has no batch: ``num_envs`` copies are stepped one after another in a Python loop,
each reset when its episode ends. Uniform random actions (6) are drawn inside the timed
loop; fastmarl auto-resets inside ``step``. Results go to ``runs/bench/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from importlib import metadata
from pathlib import Path

import gymnasium as gym
import lbforaging  # noqa: F401 (registers the reference's ids)
import numpy as np
import torch
from bench_rware import machine_info

import fastmarl

ROOT = Path(__file__).resolve().parents[1]


def bench_fastmarl(env_id: str, n: int, compile: bool, seconds: float) -> float:
    env = fastmarl.make(env_id, num_envs=n, seed=0, compile=compile)
    env.reset(seed=0)
    A, g = env.num_agents, torch.Generator().manual_seed(0)
    for _ in range(60 if compile else 5):  # warm-up (and compilation, auto-reset included: episodes <= 50 steps)
        env.step({"agent": torch.randint(0, 6, (n, A), generator=g)})
    steps, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or steps < 3:
        env.step({"agent": torch.randint(0, 6, (n, A), generator=g)})
        steps += 1
    return steps * n / elapsed


def bench_reference(env_id: str, n: int, seconds: float) -> float:
    envs = [gym.make(env_id, disable_env_checker=True).unwrapped for _ in range(n)]
    for i, e in enumerate(envs):
        e.reset(seed=i)
    A, rng = envs[0].n_agents, np.random.default_rng(0)

    def one_round() -> None:
        for e in envs:
            _, _, done, trunc, _ = e.step(list(rng.integers(0, 6, A)))
            if done or trunc:
                e.reset()
    one_round()
    rounds, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or rounds < 1:
        one_round()
        rounds += 1
    return rounds * n / elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["Foraging-8x8-2p-2f-coop-v3", "Foraging-2s-10x10-3p-3f-v3",
                                                  "Foraging-15x15-4p-3f-v3"])
    p.add_argument("--num-envs", nargs="+", type=int, default=[1, 64, 1024, 8192])
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--no-compile", action="store_true", help="skip fastmarl's compile=True column")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench"))
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    versions = (f"torch {torch.__version__}, fastmarl {fastmarl.__version__}, lbforaging "
                f"{metadata.version('lbforaging')}, gymnasium {gym.__version__}, numpy {np.__version__}")
    rows = []
    with open(out / f"lbf-{stamp}.jsonl", "w") as f:
        for env_id in args.envs:
            for n in args.num_envs:
                row = {"env": env_id, "num_envs": n,
                       "eager": bench_fastmarl(env_id, n, False, args.seconds),
                       "compile": None if args.no_compile else bench_fastmarl(env_id, n, True, args.seconds),
                       "reference": bench_reference(env_id, n, args.seconds)}
                rows.append(row)
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(row, flush=True)
    lines = [f"Machine: {machine_info()}; 1 thread, pinned. Versions: {versions}.", "",
             "| env | num_envs | fastmarl eager | fastmarl compile | lbforaging 2.0.0 | eager / ref | best / ref |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        best = max(v for v in (r["eager"], r["compile"]) if v is not None)
        comp = "-" if r["compile"] is None else f"{r['compile']:,.0f}"
        lines.append(f"| {r['env']} | {r['num_envs']} | {r['eager']:,.0f} | {comp} | {r['reference']:,.0f} | "
                     f"{r['eager'] / r['reference']:.2f}x | {best / r['reference']:.2f}x |")
    table = "\n".join(lines)
    (out / f"lbf-{stamp}.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
