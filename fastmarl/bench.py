"""``fastmarl bench envs``: env-steps/s of the batched envs under random actions.

One env-step is one step of one environment with every agent acting, so
``env-steps/s = num_envs * steps / seconds``. Episodes last ``max_cycles``
(25 by default) and auto-reset inside ``step``, so resets are part of the cost.
Uniform random actions are drawn every step inside the timed loop, as the
peers' harness in ``benchmarks/peers/peer_bench.py`` does.

``--json`` prints one JSON line per measurement (used by
``benchmarks/bench_envs.py`` to put fastmarl side by side with its peers).
"""

from __future__ import annotations

import ast
import json
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
import tyro
from rich.console import Console
from rich.table import Table

from fastmarl.envs import make
from fastmarl.version import __version__


@dataclass
class BenchEnvsConfig:
    """Measure env-steps/s of fastmarl envs under random actions."""

    envs: tuple[str, ...] = ("simple_spread_v3", "simple_tag_v3")
    """env ids to measure"""
    num_envs: tuple[int, ...] = (1, 64, 1024, 8192)
    """batch sizes to measure"""
    threads: tuple[int, ...] = (1,)
    """torch intra-op thread counts to measure (the process is pinned to that many cores)"""
    modes: tuple[Literal["eager", "compile", "aot"], ...] = ("eager", "compile", "aot")
    """eager PyTorch, torch.compile (inductor) of the whole step, and/or the step compiled ahead of time (CPU)"""
    seconds: float = 2.0
    """wall time measured per configuration, after warm-up"""
    device: str = "cpu"
    """torch device"""
    json: bool = False
    """print one JSON line per measurement instead of a table"""
    pin: bool = True
    """pin the process to the first `threads` cores while measuring (as the peer harness does)"""
    env_kwargs: dict[str, str] = field(default_factory=dict)
    """extra env keyword arguments (values parsed as Python literals)"""


_COMPILE = {"eager": False, "compile": True, "aot": "aot"}


def measure(env_id: str, num_envs: int, threads: int, mode: str, seconds: float, device: str = "cpu",
            pin: bool = True, **env_kwargs) -> dict:
    """Time random-action steps of one env configuration; returns a result dict."""
    torch.set_num_threads(threads)
    if pin and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(cores[:threads]))
    t_build = time.perf_counter()
    env = make(env_id, num_envs=num_envs, device=device, seed=0, **({"compile": _COMPILE[mode]} if mode != "eager" else {}), **env_kwargs)
    env.reset(seed=0)
    gen = torch.Generator(device=device).manual_seed(0)
    groups = list(env.spec.groups.values())

    def random_actions() -> dict:
        # drawn fresh every step and timed, as the peers' harness does
        return {g.name: torch.randint(0, g.action_dim, (num_envs, g.num_agents), generator=gen, device=device)
                if g.discrete else torch.rand((num_envs, g.num_agents, g.action_dim), generator=gen, device=device)
                for g in groups}

    for _ in range(50):  # warm-up: compiles, allocator, first resets
        env.step(random_actions())
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    sync()
    warm_s = time.perf_counter() - t_build
    steps = 0
    t0 = time.perf_counter()
    while True:
        for _ in range(25):  # whole episodes, so resets count in the right proportion
            env.step(random_actions())
        steps += 25
        sync()
        if time.perf_counter() - t0 >= seconds:
            break
    dt = time.perf_counter() - t0
    return dict(lib="fastmarl", version=__version__, torch=torch.__version__, env=env_id, mode=mode,
                num_envs=num_envs, threads=threads, device=device, steps=steps, seconds=round(dt, 4),
                steps_per_s=num_envs * steps / dt, warmup_s=round(warm_s, 2))


def _parse_kwargs(kv: dict[str, str]) -> dict:
    out = {}
    for k, v in kv.items():
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


def bench_envs(cfg: BenchEnvsConfig) -> list[dict]:
    results = []
    kw = _parse_kwargs(cfg.env_kwargs)
    modes = cfg.modes
    if torch.device(cfg.device).type != "cpu" and "aot" in modes:
        modes = tuple(m for m in modes if m != "aot")
        print(f"note: mode 'aot' is CPU-only; skipped on {cfg.device}")
    for env_id in cfg.envs:
        for threads in cfg.threads:
            for mode in modes:
                for n in cfg.num_envs:
                    r = measure(env_id, n, threads, mode, cfg.seconds, cfg.device, cfg.pin, **kw)
                    results.append(r)
                    if cfg.json:
                        print(json.dumps(r), flush=True)
    if not cfg.json:
        table = Table(title=f"fastmarl env-steps/s ({platform.processor() or platform.machine()}, torch {torch.__version__})")
        for col in ("env", "mode", "threads", "num_envs", "env-steps/s", "warm-up s"):
            table.add_column(col, justify="right" if col not in ("env", "mode") else "left")
        for r in results:
            table.add_row(r["env"], r["mode"], str(r["threads"]), str(r["num_envs"]), f"{r['steps_per_s']:,.0f}",
                          f"{r['warmup_s']:.1f}")
        Console().print(table)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv or argv[0] != "envs":
        print("usage: fastmarl bench envs [options]   (see `fastmarl bench envs --help`)")
        return 2
    cfg = tyro.cli(BenchEnvsConfig, args=argv[1:], prog="fastmarl bench envs")
    bench_envs(cfg)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
