"""What ``bench_lbf.py`` and ``bench_rware.py`` share: fastmarl's batched grid-world env vs its
reference package (one gymnasium env per copy), env-steps/s side by side in one run.

One process, pinned to one core with one torch thread. Per configuration the libraries are
interleaved (fastmarl eager, fastmarl ``compile=True``, the reference), so drift of a shared machine
hits all of them alike; the table reports ratios. The reference has no batch: ``num_envs`` copies
are stepped one after another in a Python loop (as gymnasium's SyncVectorEnv would, without its
wrapper overhead), each reset when its episode ends. Uniform random actions are drawn every step
inside the timed loop (torch for fastmarl, numpy for the reference); fastmarl auto-resets inside
``step``. Timing runs over whole steps after a warm-up (compile time excluded). Results (JSON lines
and a markdown table) go to ``runs/bench/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import fastmarl

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Family:
    """One env family's benchmark settings."""

    name: str  # file prefix of the results: runs/bench/NAME-STAMP.{jsonl,md}
    reference: str  # the reference's column title, e.g. "rware 2.0.0"
    versions: str  # the versions line (the reference's packages among them)
    default_envs: tuple[str, ...]
    n_actions: int  # uniform random actions in [0, n_actions)
    compile_warmup: int  # steps before timing with compile=True (long enough to cover an auto-reset)


def bench_fastmarl(env_id: str, n: int, compile: bool, seconds: float, n_actions: int, warmup: int) -> float:
    env = fastmarl.make(env_id, num_envs=n, seed=0, compile=compile)
    env.reset(seed=0)
    A, g = env.num_agents, torch.Generator().manual_seed(0)
    for _ in range(warmup if compile else 5):
        env.step({"agent": torch.randint(0, n_actions, (n, A), generator=g)})
    steps, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or steps < 3:
        env.step({"agent": torch.randint(0, n_actions, (n, A), generator=g)})
        steps += 1
    return steps * n / elapsed


def bench_reference(env_id: str, n: int, seconds: float, n_actions: int) -> float:
    envs = [gym.make(env_id, disable_env_checker=True).unwrapped for _ in range(n)]
    for i, e in enumerate(envs):
        e.reset(seed=i)
    A, rng = envs[0].n_agents, np.random.default_rng(0)

    def one_round() -> None:
        for e in envs:
            _, _, done, trunc, _ = e.step(list(rng.integers(0, n_actions, A)))
            if done or trunc:
                e.reset()
    one_round()
    rounds, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or rounds < 1:
        one_round()
        rounds += 1
    return rounds * n / elapsed


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores visible, Python {platform.python_version()}, {platform.system()}"


def table(rows: list[dict], family: Family, versions: str) -> str:
    short = family.reference.split()[0]
    lines = [f"Machine: {machine_info()}; 1 thread, pinned. Versions: {versions}.", "",
             f"| env | num_envs | fastmarl eager | fastmarl compile | {family.reference} | eager / {short} "
             f"| best / {short} |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        best = max(v for v in (r["eager"], r["compile"]) if v is not None)
        comp = "-" if r["compile"] is None else f"{r['compile']:,.0f}"
        lines.append(f"| {r['env']} | {r['num_envs']} | {r['eager']:,.0f} | {comp} | {r['reference']:,.0f} | "
                     f"{r['eager'] / r['reference']:.2f}x | {best / r['reference']:.2f}x |")
    return "\n".join(lines)


def main(family: Family, doc: str | None) -> int:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=list(family.default_envs))
    p.add_argument("--num-envs", nargs="+", type=int, default=[1, 64, 1024, 8192])
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--no-compile", action="store_true", help="skip fastmarl's compile=True column")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench"))
    args = p.parse_args()
    if any(n < 1 for n in args.num_envs) or args.seconds <= 0:
        p.error("--num-envs must be positive ints and --seconds a positive number")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    versions = (f"torch {torch.__version__}, fastmarl {fastmarl.__version__}, {family.versions}, "
                f"gymnasium {gym.__version__}, numpy {np.__version__}")
    rows = []
    with open(out / f"{family.name}-{stamp}.jsonl", "w") as f:
        for env_id in args.envs:
            for n in args.num_envs:
                row = {"env": env_id, "num_envs": n,
                       "eager": bench_fastmarl(env_id, n, False, args.seconds, family.n_actions, family.compile_warmup),
                       "compile": None if args.no_compile else bench_fastmarl(
                           env_id, n, True, args.seconds, family.n_actions, family.compile_warmup),
                       "reference": bench_reference(env_id, n, args.seconds, family.n_actions)}
                rows.append(row)
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(row, flush=True)
    text = table(rows, family, versions)
    (out / f"{family.name}-{stamp}.md").write_text(text + "\n")
    print(text)
    return 0
