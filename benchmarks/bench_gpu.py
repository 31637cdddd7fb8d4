"""fastmarl env-steps/s on a CUDA device, optionally side by side with VMAS (torch).

    python benchmarks/bench_gpu.py --num-envs 8192 65536 262144 --libs fastmarl-eager fastmarl-compile vmas

Uses ``fastmarl.bench.measure`` for fastmarl and ``benchmarks/peers/peer_bench.py``'s
protocol for VMAS (random discrete actions drawn every step, 25-step episodes).
Prints one JSON line per measurement; errors are reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench_vmas_cuda(env: str, num_envs: int, seconds: float, device: str) -> dict:
    import vmas

    kw = dict(n_agents=3) if env == "simple_spread" else dict(num_good_agents=1, num_adversaries=3, num_landmarks=2)
    e = vmas.make_env(env, num_envs=num_envs, device=device, continuous_actions=False, max_steps=25, seed=0, **kw)
    e.reset()
    n_agents = e.n_agents
    mpe_actions = torch.tensor([0, 1, 2, 3, 6], device=device)  # VMAS's 3x3 grid, MPE's 5 moves

    @torch.no_grad()
    def episode():
        for _ in range(25):
            acts = mpe_actions[torch.randint(0, 5, (n_agents, num_envs, 1), device=device)]
            e.step(list(acts.unbind(0)))
        e.reset()  # every env ends at step 25 together: one batched reset

    episode()
    torch.cuda.synchronize()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        episode()
        steps += 25
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return dict(lib="vmas", version=vmas.__version__, env=env, num_envs=num_envs, device=device,
                steps_per_s=num_envs * steps / dt)


def main() -> int:
    from fastmarl.bench import measure

    p = argparse.ArgumentParser()
    p.add_argument("--envs", nargs="+", default=["simple_spread", "simple_tag"])
    p.add_argument("--num-envs", nargs="+", type=int, default=[1024, 8192, 65536, 262144])
    p.add_argument("--libs", nargs="+", default=["fastmarl-eager", "fastmarl-compile", "vmas"])
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    print(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}), flush=True)
    for env in args.envs:
        for n in args.num_envs:
            for lib in args.libs:
                try:
                    if lib.startswith("fastmarl"):
                        r = measure(f"{env}_v3", n, threads=1, mode=lib.split("-")[1], seconds=args.seconds,
                                    device=args.device, pin=False)
                    else:
                        r = bench_vmas_cuda(env, n, args.seconds, args.device)
                    r["label"] = lib
                    print(json.dumps(r), flush=True)
                except Exception as exc:  # report and go on
                    print(json.dumps({"label": lib, "env": env, "num_envs": n, "error": repr(exc)[:300]}), flush=True)
                    traceback.print_exc(limit=3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
