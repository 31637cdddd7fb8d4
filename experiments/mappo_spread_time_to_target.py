"""Wall time for the default MAPPO run on simple_spread_v3 (N=3) to reach a target return.

Runs the *default* command, with a seed and a run name added,
``fastmarl train --algo mappo --env simple_spread_v3 --seed S --name NAME``,
in a subprocess and watches its ``eval.csv``: the clock starts before the
process is launched, so Python start-up, imports and env construction are
included. Evaluation returns are per agent (mpe2 convention),
100 episodes, deterministic and stochastic. Target: -16 within ~80 s on 2 CPU
cores (random policy: about -26; the scripted policy of fastmarl.envs.scripted: about -7.7).

    python experiments/mappo_spread_time_to_target.py --seeds 0 1 2

Extra arguments after ``--`` go to ``fastmarl train`` (e.g. ``-- --total-steps 1e6``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(seed: int, target: float, runs_dir: Path, extra: list[str]) -> dict:
    name = f"bench_spread_s{seed}"
    cmd = [sys.executable, "-m", "fastmarl.cli", "train", "--algo", "mappo", "--env", "simple_spread_v3",
           "--seed", str(seed), "--name", name, "--runs-dir", str(runs_dir), "--no-progress", *extra]
    eval_csv = runs_dir / name / "eval.csv"
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen, curve, reached = 0, [], None
    while True:
        finished = proc.poll() is not None
        if eval_csv.is_file():
            with open(eval_csv) as f:
                rows = list(csv.DictReader(f))
            now = time.perf_counter() - t0
            for r in rows[seen:]:
                point = {"wall_s": round(now, 1), "step": int(r["step"]), "det": round(float(r["return_det"]), 2),
                         "stoch": round(float(r["return_stoch"]), 2)}
                curve.append(point)
                print(f"  seed {seed}: {point['wall_s']:6.1f}s  step {point['step']:>9,}  "
                      f"eval det {point['det']:7.2f}  stoch {point['stoch']:7.2f}", flush=True)
                if reached is None and max(point["det"], point["stoch"]) >= target:
                    reached = point
            seen = len(rows)
        if finished:
            break
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed: {proc.stderr.read()}")
    return {"seed": seed, "total_wall_s": round(time.perf_counter() - t0, 1), "reached": reached, "curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--target", type=float, default=-16.0)
    ap.add_argument("--runs-dir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="fastmarl_bench_"))
    print(f"cpu cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}, runs in {runs_dir}")
    results = []
    for seed in args.seeds:
        res = run_one(seed, args.target, runs_dir, extra)
        r = res["reached"]
        print(f"seed {seed}: " + (f"reached {args.target} at {r['wall_s']}s (step {r['step']:,})" if r else
                                  f"did not reach {args.target}") + f"; whole run {res['total_wall_s']}s; "
              f"load average now {os.getloadavg()[0]:.2f}")
        results.append(res)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
