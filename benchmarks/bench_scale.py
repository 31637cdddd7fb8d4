"""Scale-out measurements for docs/scale.md, side by side in one run:

(a) a 10-run grid (MAPPO on simple_spread_v3, 10 seeds), sequential ``fastmarl.train`` calls in
    one process vs ``fastmarl sweep`` on the local cores (1 CPU per trial);
(b) a PettingZoo env that cannot be batched (SISL pursuit_v5), stepped in-process vs by
    ``process`` workers vs ``ray`` workers: env-steps/s under random actions;
(c) the per-call overheads behind the scaling estimate: a no-op Ray actor round trip, and one
    batched step of a trivial env through each backend.

``PYTHONPATH=. python benchmarks/bench_scale.py --out runs/bench_scale.json`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import fastmarl
from fastmarl.config import PPOConfig, TrainConfig
from fastmarl.envs.pz_vecenv import from_pettingzoo


def grid_runs(seeds: int, steps: int, cores: int) -> dict:
    common = dict(algo="mappo", env="simple_spread_v3", total_steps=steps, num_envs=32, eval_interval=0,
                  eval_episodes=16, gif=False, tensorboard=False, progress=False, threads=1,
                  checkpoint_interval=0, ppo=PPOConfig())
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    t = time.perf_counter()
    for s in range(seeds):
        fastmarl.train(TrainConfig(**common, seed=s, runs_dir=str(tmp / "seq"), name=f"s{s}"))
    sequential = time.perf_counter() - t
    cmd = [sys.executable, "-m", "fastmarl.cli", "sweep", "--algos", "mappo", "--envs", "simple_spread_v3",
           "--seeds", *map(str, range(seeds)), "--storage", str(tmp), "--name", "sweep", "--num-cpus", str(cores),
           "--cpus-per-trial", "1", "--set", f"total_steps={steps}", "num_envs=32", "eval_interval=0",
           "eval_episodes=16", "tensorboard=False", "checkpoint_interval=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    sweep = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    summary = json.loads((tmp / "sweep" / "summary.json").read_text())
    trial_time = sum(r["time"] for r in summary["trials"])
    shutil.rmtree(tmp, ignore_errors=True)
    return {"runs": seeds, "steps_per_run": steps, "cores": cores, "sequential_s": sequential, "sweep_s": sweep,
            "speedup": sequential / sweep, "ideal": min(cores, seeds),
            "sweep_trial_train_s_sum": trial_time, "counts": summary["counts"]}


def pursuit():
    from pettingzoo.sisl import pursuit_v5
    return pursuit_v5.parallel_env(max_cycles=500)


def _actions(env, n: int, seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    return [{g: torch.randint(0, s.action_dim, (env.num_envs, s.num_agents), generator=gen)
             for g, s in env.spec.groups.items()} for _ in range(n)]


def _timed(env, acts: list[dict]) -> float:
    t = time.perf_counter()
    for a in acts:
        env.step(a)
    return env.num_envs * len(acts) / (time.perf_counter() - t)


def interleaved(envs: dict, steps: int, repeats: int) -> dict[str, list[float]]:
    """env-steps/s of each env over ``repeats`` rounds, the backends taking turns within each round
    (the machine is shared: a burst of load hits every backend alike). Every env gets the same
    actions, so they walk the same trajectories."""
    acts = _actions(next(iter(envs.values())), 3 + steps * repeats)
    for env in envs.values():
        env.reset(seed=0)
        for a in acts[:3]:  # warm-up
            env.step(a)
    out: dict[str, list[float]] = {k: [] for k in envs}
    for r in range(repeats):
        chunk = acts[3 + r * steps: 3 + (r + 1) * steps]
        for k, env in envs.items():
            out[k].append(_timed(env, chunk))
    return out


def backends(num_envs: int, workers: int, steps: int, repeats: int) -> list[dict]:
    import ray
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    envs, start = {}, {}
    for backend, k in (("inprocess", None), ("process", workers), ("ray", workers)):
        t = time.perf_counter()
        envs[backend] = from_pettingzoo(pursuit, num_envs, seed=0, need_state=False, backend=backend, num_workers=k)
        start[backend] = time.perf_counter() - t
    sps = interleaved(envs, steps, repeats)
    rows = []
    for backend, env in envs.items():
        env.close()
        v = sorted(sps[backend])
        rows.append({"env": "pettingzoo.sisl.pursuit_v5", "backend": backend,
                     "workers": 1 if backend == "inprocess" else workers, "num_envs": num_envs,
                     "env_steps_per_s_median": v[len(v) // 2], "env_steps_per_s_best": v[-1], "rounds": v,
                     "startup_s": start[backend]})
    return rows


def _trivial():
    """mpe2's one-agent simple_v3: a step costs tens of microseconds, the rest is the backend's overhead."""
    from mpe2 import simple_v3
    return simple_v3.parallel_env(max_cycles=10**6)


def overheads(workers: int, steps: int) -> dict:
    import ray

    @ray.remote(num_cpus=0)
    class Ping:
        def ping(self, x):
            return x

    p = Ping.remote()
    ray.get(p.ping.remote(0))
    t = time.perf_counter()
    for i in range(steps):
        ray.get(p.ping.remote(i))
    actor_rtt = (time.perf_counter() - t) / steps
    out = {"ray_actor_roundtrip_ms": actor_rtt * 1e3}
    envs = {b: from_pettingzoo(_trivial, workers, seed=0, need_state=False, backend=b, num_workers=k)
            for b, k in (("inprocess", None), ("process", workers), ("ray", workers))}
    for b, v in interleaved(envs, steps, 3).items():
        out[f"trivial_batched_step_ms_{b}"] = 1e3 * workers / sorted(v)[1]  # one step of `workers` envs, median
        envs[b].close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/bench_scale.json")
    p.add_argument("--grid-steps", type=int, default=20_000)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--env-steps", type=int, default=25)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-grid", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    cores = os.cpu_count() or 1
    result = {"machine": {"cpus": cores, "platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__, "load_avg_at_start": os.getloadavg()}}
    if not args.skip_grid:
        result["grid"] = grid_runs(args.seeds, args.grid_steps, cores)
    result["backends"] = backends(args.num_envs, args.workers, args.env_steps, args.repeats)
    result["overheads"] = overheads(args.workers, 200)
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
