"""Training speed side by side: BenchMARL's MAPPO vs fastmarl's MAPPO on simple_spread (N=3).

    bash benchmarks/setup_benchmarl.sh            # once: benchmarks/.venv-benchmarl
    python benchmarks/bench_training.py           # BenchMARL 300 s, then fastmarl (2M steps, at most 300 s)
    python benchmarks/bench_training.py --benchmarl-budget 600 --thresholds -22 -20 -16
    python benchmarks/bench_training.py --skip-benchmarl   # reuse runs/bench/benchmarl.jsonl

One invocation trains both, one after the other (never at once), each in its own
process with the same number of torch threads (``--threads``, 1 by default: the
machine is shared), on the same task: simple_spread_v3 with N=3, local_ratio
0.5, max_cycles 25, discrete actions; BenchMARL on PettingZoo 1.25's
``pettingzoo.mpe`` (stepped in Python through TorchRL), fastmarl on its batched
torch env. Each uses its own default MAPPO settings (see
benchmarks/benchmarl/run_benchmarl.py and ``fastmarl train --help``).

Both report the same number after each training iteration: the mean over the
episodes that ended in that iteration of the per-agent return (each agent's
reward summed over the episode, averaged over the agents) of the stochastic
training policy. Time is the training loop's wall time, from its first
collection (set-up and imports excluded, and reported separately). From these:
env-steps/s (one step of one env, all agents acting), the return curve vs wall
time, and the wall time to reach each threshold (``--thresholds``, plus the best
return BenchMARL reached in its budget).

Writes runs/bench/{benchmarl.jsonl, fastmarl/, bench_training.json}, the figure
docs/figures/bench_training_benchmarl.png and the Markdown section
benchmarks/benchmarl/RESULTS.md (for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PY = ROOT / "benchmarks" / ".venv-benchmarl" / "bin" / "python"

# JaxMARL on the same machine kind (2 CPU cores), measured earlier by the project (issue 3);
# JaxMARL's training scripts are not on the package registry, so they are not rerun here.
JAXMARL_REFERENCE = [
    {"name": "JaxMARL MAPPO (GRU)", "return": -16.0, "env_steps": 1_000_000, "time_s": 391.0, "steps_per_s": 2_500},
    {"name": "JaxMARL IPPO (feed-forward)", "return": -19.5, "env_steps": 10_000_000, "time_s": 270.0,
     "steps_per_s": 37_000},
]


def _parse_count(s: str) -> int:
    v = float(s)
    if v != int(v):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {s}")
    return int(v)


def run_benchmarl(args, out: Path) -> dict:
    if not VENV_PY.is_file():
        raise SystemExit(f"{VENV_PY} not found: run `bash benchmarks/setup_benchmarl.sh` first")
    cmd = [str(VENV_PY), str(ROOT / "benchmarks" / "benchmarl" / "run_benchmarl.py"), "--budget", str(args.benchmarl_budget),
           "--seed", str(args.seed), "--threads", str(args.threads), "--out", str(out)]
    env = {**os.environ, "RL_WARNINGS": "False", "PYTHONWARNINGS": "ignore", "SDL_AUDIODRIVER": "dummy",
           "OMP_NUM_THREADS": str(args.threads)}
    print(f"== BenchMARL MAPPO, {args.benchmarl_budget:.0f} s budget", flush=True)
    t0 = time.perf_counter()
    lines = []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:  # progress lines as they come; TorchRL's warnings only on failure
            lines.append(line)
            if line.startswith(("frames", "BenchMARL")):
                print("  " + line.rstrip(), flush=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"BenchMARL run failed (exit code {proc.returncode}):\n{''.join(lines)[-3000:]}")
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    return {"rows": rows, "process_wall_s": wall, "meta": meta}


def run_fastmarl(args, runs_dir: Path) -> dict:
    name = "fastmarl"
    if (runs_dir / name).exists():
        shutil.rmtree(runs_dir / name)
    cmd = [sys.executable, "-m", "fastmarl.cli", "train", "--algo", "mappo", "--env", "simple_spread_v3",
           "--env-kwargs", "N=3", "local_ratio=0.5", "max_cycles=25", "--total-steps", str(args.fastmarl_steps),
           "--seed", str(args.seed), "--threads", str(args.threads), "--eval-interval", "0",
           "--checkpoint-interval", "0", "--no-gif", "--no-tensorboard", "--no-progress", "--name", name,
           "--runs-dir", str(runs_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    print(f"== fastmarl MAPPO, {args.fastmarl_steps:,} env steps (at most {args.fastmarl_budget:.0f} s)", flush=True)
    t0 = time.perf_counter()
    timed_out = False
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=args.fastmarl_budget + 60)
        if proc.returncode != 0:
            raise SystemExit(f"fastmarl run failed (exit code {proc.returncode}):\n{proc.stdout[-3000:]}")
    except subprocess.TimeoutExpired:
        timed_out = True
    wall = time.perf_counter() - t0
    with open(runs_dir / name / "metrics.csv", newline="") as f:
        rows = [{"step": int(float(r["step"])), "time": float(r["time"]), "return": float(r["return"])}
                for r in csv.DictReader(f) if r.get("return")]
    rows = [r for r in rows if r["time"] <= args.fastmarl_budget] or rows[:1]
    for r in rows[:: max(1, len(rows) // 8)]:
        print(f"  steps {r['step']:>9,}  {r['time']:6.1f}s  {r['step'] / r['time']:7.0f} steps/s  "
              f"return per agent {r['return']:.2f}", flush=True)
    return {"rows": rows, "process_wall_s": wall, "timed_out": timed_out}


def summarise(rows: list[dict], thresholds: list[float]) -> dict:
    last = rows[-1]
    reach = {}
    for t in thresholds:
        hit = next((r for r in rows if r["return"] >= t), None)
        reach[str(t)] = None if hit is None else {"time": hit["time"], "step": hit["step"]}
    best = max(rows, key=lambda r: r["return"])
    return {"env_steps": last["step"], "time_s": last["time"], "steps_per_s": last["step"] / last["time"],
            "first_return": rows[0]["return"], "final_return": last["return"], "best_return": best["return"],
            "best_at": {"time": best["time"], "step": best["step"]}, "reach": reach}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for key, label, color in (("benchmarl", "BenchMARL MAPPO (PettingZoo mpe)", "tab:red"),
                              ("fastmarl", "fastmarl MAPPO (batched torch env)", "tab:blue")):
        rows = results[key]["rows"]
        ax.plot([r["time"] for r in rows], [r["return"] for r in rows], "-", color=color, label=label,
                marker="o" if len(rows) < 40 else None, markersize=3)
    for ref, marker in zip(JAXMARL_REFERENCE, ("s", "^")):
        ax.plot([ref["time_s"]], [ref["return"]], marker, color="tab:green", markersize=8,
                label=f"{ref['name']} (reference, {ref['env_steps'] / 1e6:g}M steps)")
    ax.set_xscale("log")
    ax.set_xlabel("training wall time (s, log scale)")
    ax.set_ylabel("training return per agent")
    ax.set_title(f"simple_spread_v3 (N=3), {results['threads']} torch thread(s) each", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _fmt_reach(r: dict | None, budget: float) -> str:
    return f"{r['time']:.1f} s ({r['step'] / 1000:,.0f}k steps)" if r else f"not within {budget:.0f} s"


def write_section(results: dict, args, path: Path, figure: Path) -> str:
    b, f = results["benchmarl"]["summary"], results["fastmarl"]["summary"]
    bm = results["benchmarl"]["meta"]
    th = results["thresholds"]
    L = ["## Training speed vs BenchMARL (MAPPO, simple_spread_v3)", ""]
    L.append(f"`python benchmarks/bench_training.py` (after `bash benchmarks/setup_benchmarl.sh`), "
             f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores ({platform.machine()}), "
             f"{results['threads']} torch thread(s) per run, runs one after the other; 1-minute load average "
             f"{results['load_before']:.2f} before, {results['load_after']:.2f} after (the machine is shared).")
    L.append("")
    L.append("Task: simple_spread_v3, N=3, local_ratio 0.5, max_cycles 25, discrete actions. BenchMARL 1.5.2 "
             "(torchrl 0.11.1, tensordict 0.11.0, torch 2.13.0) runs PettingZoo 1.25.0's `pettingzoo.mpe` "
             f"through TorchRL with its default MAPPO settings ({bm['frames_per_batch']:,} frames per iteration "
             f"from {bm['n_envs']} envs, {bm['n_minibatch_iters']} passes of minibatches of {bm['minibatch_size']}, "
             f"lr {bm['lr']:g}, MLP 256x256 tanh), evaluation and logging off; "
             f"fastmarl its default MAPPO (200 batched envs x 25 steps per update, 4 epochs x 4 minibatches, "
             f"lr 3e-3 annealed over {args.fastmarl_steps:,} steps, MLP 64x64 ReLU). Return: the training "
             "episodes' return per agent (each agent's summed episode reward, mean over agents, mean over the "
             "episodes ending in an iteration); BenchMARL logs exactly this as "
             "`collection/agents/reward/episode_reward_mean`. Time: the training loop's wall time (set-up "
             f"excluded: BenchMARL {bm['setup_s']:.1f} s to build its experiment).")
    L.append("")
    L.append(f"![training return vs wall time](figures/{figure.name})")
    L.append("")
    hdr = " | ".join(f"time to {t:g}" for t in th)
    L.append(f"| run | env-steps/s | env steps in run | final / best return | {hdr} | time to BenchMARL's best ({b['best_return']:.2f}) |")
    L.append("|---|---|---|---|" + "---|" * (len(th) + 1))
    for key, label, budget in (("benchmarl", "BenchMARL MAPPO", args.benchmarl_budget),
                               ("fastmarl", "fastmarl MAPPO", args.fastmarl_budget)):
        s = results[key]["summary"]
        reach = " | ".join(_fmt_reach(s["reach"][str(t)], budget) for t in th)
        best = _fmt_reach(s["reach"]["benchmarl_best"], budget)
        L.append(f"| {label} | {s['steps_per_s']:,.0f} | {s['env_steps']:,} in {s['time_s']:.0f} s | "
                 f"{s['final_return']:.2f} / {s['best_return']:.2f} | {reach} | {best} |")
    for ref in JAXMARL_REFERENCE:
        cells = []
        for t in th:
            # only the end point is known: the threshold was reached at or before it
            cells.append(f"<= {ref['time_s']:.0f} s (by {ref['env_steps'] / 1e6:g}M steps)" if ref["return"] >= t else "-")
        L.append(f"| {ref['name']} (reference) | ~{ref['steps_per_s']:,} | {ref['env_steps']:,} in "
                 f"{ref['time_s']:.0f} s | about {ref['return']:g} at the end | {' | '.join(cells)} | - |")
    L.append("")
    speed = f["steps_per_s"] / b["steps_per_s"]
    L.append(f"fastmarl steps the task {speed:,.0f}x as fast as BenchMARL in this setting "
             f"({f['steps_per_s']:,.0f} vs {b['steps_per_s']:,.0f} env-steps/s, training included). "
             f"In its {args.benchmarl_budget:.0f} s BenchMARL went from {b['first_return']:.2f} to a best "
             f"of {b['best_return']:.2f} per agent; fastmarl reached that return "
             + (f"after {_fmt_reach(f['reach']['benchmarl_best'], args.fastmarl_budget)}" if f['reach']['benchmarl_best']
                else f"not within its {args.fastmarl_budget:.0f} s") + ". The BenchMARL numbers are "
             "for its defaults (lr 5e-5, many minibatch passes per batch), not tuned for this task, so they say "
             "little about how fast it could learn per env step; its throughput is set by those minibatch "
             "passes and by collection from the Python PettingZoo env through TorchRL (next paragraph).")
    L.append("")
    L.append("JaxMARL rows are the reference figures measured earlier by the project on the same machine kind "
             "(2 CPU cores; JaxMARL's training scripts are not on the package registry, so they are not rerun "
             "here): MAPPO with a GRU reached about -16 per agent after 1M env steps in 391 s (2.5k "
             "env-steps/s); feed-forward IPPO about -19.5 after 10M steps in 270 s (37k env-steps/s). "
             f"fastmarl's feed-forward MAPPO here: {f['steps_per_s']:,.0f} env-steps/s with "
             f"{results['threads']} thread(s), -16 after "
             f"{_fmt_reach(f['reach']['-16.0'], args.fastmarl_budget) if '-16.0' in f['reach'] else '(not measured)'}.")
    first = results["benchmarl"]["rows"][0]
    L.append("")
    L.append(f"BenchMARL's first iteration, collection only, took {first['time']:.1f} s for {first['step']:,} env "
             f"steps ({first['step'] / first['time']:,.0f} env-steps/s); each later iteration (its minibatch "
             f"passes plus the next collection) about {(b['time_s'] - first['time']) / max(1, len(results['benchmarl']['rows']) - 1):.1f} s. "
             + ("Its return was still rising when the budget ended." if b["best_at"]["step"] == b["env_steps"] else ""))
    L.append("")
    L.append("Env-steps/s is each run's last logged env step count over its training wall time at that point "
             "(for BenchMARL, logged after each collection, so its last iteration's training time is not "
             "counted, which flatters it slightly).")
    L.append("")
    text = "\n".join(L)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<!-- section for docs/benchmarks.md, written by benchmarks/bench_training.py; the figure "
                    "link is relative to docs/ -->\n\n" + text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarl-budget", type=float, default=300.0, help="BenchMARL's training wall time (s)")
    ap.add_argument("--fastmarl-budget", type=float, default=300.0, help="fastmarl's wall-time cap (s)")
    ap.add_argument("--fastmarl-steps", type=_parse_count, default=2_000_000, help="fastmarl's env steps (its lr schedule)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[-20.0, -16.0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--skip-benchmarl", action="store_true", help="reuse OUT/benchmarl.jsonl")
    ap.add_argument("--results-md", type=Path, default=ROOT / "benchmarks" / "benchmarl" / "RESULTS.md")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "bench_training_benchmarl.png")
    ap.add_argument("--report-only", action="store_true", help="rebuild the figure and section from OUT/bench_training.json")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        results = json.loads((args.out / "bench_training.json").read_text())
        plot(results, args.figure)
        print(write_section(results, args, args.results_md, args.figure))
        return
    load_before = os.getloadavg()[0]
    bm_out = args.out / "benchmarl.jsonl"
    if args.skip_benchmarl:
        rows = [json.loads(line) for line in bm_out.read_text().splitlines() if line.strip()]
        benchmarl = {"rows": rows, "process_wall_s": None, "meta": json.loads(bm_out.with_suffix(".meta.json").read_text())}
    else:
        benchmarl = run_benchmarl(args, bm_out)
    fastmarl = run_fastmarl(args, args.out)
    results = {"threads": args.threads, "thresholds": args.thresholds, "load_before": load_before,
               "load_after": os.getloadavg()[0], "benchmarl": benchmarl, "fastmarl": fastmarl,
               "jaxmarl_reference": JAXMARL_REFERENCE}
    for key in ("benchmarl", "fastmarl"):
        results[key]["summary"] = summarise(results[key]["rows"], args.thresholds)
    best = results["benchmarl"]["summary"]["best_return"]
    for key in ("benchmarl", "fastmarl"):
        results[key]["summary"]["reach"]["benchmarl_best"] = summarise(results[key]["rows"], [best])["reach"][str(best)]
    (args.out / "bench_training.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.figure)
    print()
    print(write_section(results, args, args.results_md, args.figure))
    print(f"wrote {args.out / 'bench_training.json'}, {args.figure}, {args.results_md}")


if __name__ == "__main__":
    main()
