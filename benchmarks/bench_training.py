"""Training speed side by side: BenchMARL's MAPPO / QMIX / VDN vs fastmarl's on simple_spread (N=3).

    bash benchmarks/setup_benchmarl.sh            # once: benchmarks/.venv-benchmarl
    python benchmarks/bench_training.py           # BenchMARL 300 s, then fastmarl (2M steps, at most 300 s)
    python benchmarks/bench_training.py --algos qmix vdn   # BenchMARL QMIX 300 s, fastmarl QMIX to -17; then VDN
    python benchmarks/bench_training.py --algos qmix vdn --report-only
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

``--algos qmix vdn``: for each, BenchMARL's default QMIX (VDN) for
``--benchmarl-budget`` seconds, then ``fastmarl train --algo qmix`` (vdn) until
its training return reaches both ``--target`` (-17, the issue's) and BenchMARL's
best, or ``--fastmarl-steps`` env steps, or ``--fastmarl-q-budget`` seconds.
Epsilon anneals over ``--epsilon-anneal-steps`` in both (BenchMARL's default ties
it to max_n_frames, which a wall-time budget makes meaningless). Writes
runs/bench/{benchmarl_<algo>.jsonl, fastmarl_<algo>/, bench_training_value.json},
docs/figures/bench_training_benchmarl_value.png and the QMIX/VDN section of
RESULTS.md (the MAPPO section is kept).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
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


def run_benchmarl(args, out: Path, algo: str = "mappo") -> dict:
    if not VENV_PY.is_file():
        raise SystemExit(f"{VENV_PY} not found: run `bash benchmarks/setup_benchmarl.sh` first")
    cmd = [str(VENV_PY), str(ROOT / "benchmarks" / "benchmarl" / "run_benchmarl.py"), "--budget", str(args.benchmarl_budget),
           "--seed", str(args.seed), "--threads", str(args.threads), "--out", str(out), "--algo", algo,
           "--exploration-anneal-frames", str(args.epsilon_anneal_steps)]
    env = {**os.environ, "RL_WARNINGS": "False", "PYTHONWARNINGS": "ignore", "SDL_AUDIODRIVER": "dummy",
           "OMP_NUM_THREADS": str(args.threads)}
    print(f"== BenchMARL {algo.upper()}, {args.benchmarl_budget:.0f} s budget", flush=True)
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
    update_results(path, MAPPO_HEADING, text)
    return text


# -- value-based: BenchMARL's QMIX and VDN vs fastmarl's --------------------------------------------

MAPPO_HEADING = "## Training speed vs BenchMARL (MAPPO"
VALUE_HEADING = "## Training speed vs BenchMARL (QMIX and VDN"
RESULTS_HEADER = ("<!-- sections for docs/benchmarks.md, written by benchmarks/bench_training.py; the figure "
                  "links are relative to docs/ -->")


def update_results(path: Path, heading: str, text: str) -> None:
    """Replace (or append) the ``## `` section of ``path`` whose heading starts with ``heading``, keeping the others."""
    sections: list[str] = []
    if path.is_file():
        cur: list[str] = []
        for line in path.read_text().splitlines():
            if line.startswith("## ") and cur:
                sections.append("\n".join(cur).strip("\n"))
                cur = []
            cur.append(line)
        if cur:
            sections.append("\n".join(cur).strip("\n"))
    sections = [x for x in sections if x.startswith("## ")]
    new = text.strip("\n")
    for i, sec in enumerate(sections):
        if sec.startswith(heading):
            sections[i] = new
            break
    else:
        sections.append(new)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RESULTS_HEADER + "\n\n" + "\n\n".join(sections) + "\n")


def _read_metrics(csv_path: Path) -> list[dict]:
    if not csv_path.is_file():
        return []
    with open(csv_path, newline="") as f:
        return [{"step": int(float(r["step"])), "time": float(r["time"]), "return": float(r["return"])}
                for r in csv.DictReader(f) if r.get("return")]


def run_fastmarl_q(args, runs_dir: Path, algo: str, stop_at: float) -> dict:
    """``fastmarl train --algo {qmix,vdn}`` until the training return reaches ``stop_at``, 2M steps or the wall cap."""
    name = f"fastmarl_{algo}"
    if (runs_dir / name).exists():
        shutil.rmtree(runs_dir / name)
    cmd = [sys.executable, "-m", "fastmarl.cli", "train", "--algo", algo, "--env", "simple_spread_v3",
           "--env-kwargs", "N=3", "local_ratio=0.5", "max_cycles=25", "--total-steps", str(args.fastmarl_steps),
           "--seed", str(args.seed), "--threads", str(args.threads), "--epsilon-anneal-steps",
           str(args.epsilon_anneal_steps), "--eval-interval", "0", "--checkpoint-interval", "0",
           "--no-checkpoint-replay", "--no-tensorboard", "--name", name, "--runs-dir", str(runs_dir),
           *shlex.split(args.fastmarl_q_args)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    print(f"== fastmarl {algo.upper()}, until return >= {stop_at:.2f} or {args.fastmarl_steps:,} env steps "
          f"(at most {args.fastmarl_q_budget:.0f} s)", flush=True)
    t0 = time.perf_counter()
    stopped = None
    log = open(runs_dir / f"{name}.log", "w")
    with subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True) as proc:
        shown = 0
        while proc.poll() is None:
            time.sleep(1.0)
            rows = _read_metrics(runs_dir / name / "metrics.csv")
            for r in rows[shown:]:
                print(f"  steps {r['step']:>9,}  {r['time']:6.1f}s  {r['step'] / max(r['time'], 1e-9):7.0f} steps/s  "
                      f"return per agent {r['return']:.2f}", flush=True)
            shown = len(rows)
            if rows and rows[-1]["return"] >= stop_at:
                stopped = "target"
            elif time.perf_counter() - t0 > args.fastmarl_q_budget:
                stopped = "budget"
            if stopped:
                proc.terminate()
                proc.wait()
                break
    log.close()
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, None) and stopped is None:
        raise SystemExit(f"fastmarl run failed (exit code {proc.returncode}); see {runs_dir / (name + '.log')}")
    rows = _read_metrics(runs_dir / name / "metrics.csv")
    config = json.loads((runs_dir / name / "config.json").read_text())
    return {"rows": rows, "process_wall_s": wall, "stopped": stopped or "steps", "config": config,
            "git": _git_revision()}


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fastmarl"], cwd=ROOT, capture_output=True,
                               text=True).stdout
        return rev.strip() + ("+uncommitted changes" if dirty.strip() else "")
    except OSError:
        return "unknown"


def plot_value(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = results["algos"]
    fig, axes = plt.subplots(1, len(algos), figsize=(6 * len(algos), 3.6), squeeze=False)
    for ax, algo in zip(axes[0], algos):
        r = results[algo]
        for key, label, color in (("benchmarl", f"BenchMARL {algo.upper()} (PettingZoo mpe)", "tab:red"),
                                  ("fastmarl", f"fastmarl {algo.upper()} (batched torch env)", "tab:blue")):
            rows = r[key]["rows"]
            ax.plot([x["time"] for x in rows], [x["return"] for x in rows], "-", color=color, label=label,
                    marker="o" if len(rows) < 40 else None, markersize=3)
        ax.axhline(results["target"], color="k", ls="--", lw=1, label=f"target {results['target']:g}")
        ax.set_xscale("log")
        ax.set_xlabel("training wall time (s, log scale)")
        ax.set_ylabel("training return per agent")
        ax.set_title(f"{algo.upper()}, simple_spread_v3 (N=3), {results['threads']} torch thread(s) each", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_value_section(results: dict, args, path: Path, figure: Path) -> str:
    th = results["target"]
    # each algo's BenchMARL budget (older results files kept one for all: the command line's)
    bm_budget = {a: results[a].get("benchmarl_budget", args.benchmarl_budget) for a in results["algos"]}
    L = [VALUE_HEADING + ", simple_spread_v3)", ""]
    q_args = results.get("fastmarl_q_args", "")
    cmd = "python benchmarks/bench_training.py --algos " + " ".join(results["algos"])
    if q_args:
        cmd += f' --fastmarl-q-args "{q_args}"'
    order = ", ".join(f"BenchMARL {a.upper()}, fastmarl {a.upper()}" for a in results["algos"])
    if len({results[a].get("run_date") for a in results["algos"]}) > 1 or len(set(bm_budget.values())) > 1:
        order += "; the pairs " + ", ".join(
            f"{a.upper()} ({results[a].get('run_date', results['date'])}, BenchMARL budget {bm_budget[a]:,.0f} s)"
            for a in results["algos"]) + " come from separate invocations with `--algos` naming one of them, each "
        order += "pair side by side"
    L.append(f"`{cmd}` (after `bash benchmarks/setup_benchmarl.sh`), "
             f"{results['date']}, {os.cpu_count()} CPU cores ({platform.machine()}), {results['threads']} torch "
             f"thread(s) per run, the runs one after the other ({order}); 1-minute load average {results['load_before']:.2f} before, "
             f"{results['load_after']:.2f} after (the machine is shared with other work, so absolute times are noisy).")
    L.append("")
    bm = results[results["algos"][0]]["benchmarl"]["meta"]
    cfg = results[results["algos"][0]]["fastmarl"]["config"]
    keys = ("num_envs", "recurrent", "hidden_size", "num_layers", "buffer_size", "batch_size", "update_interval", "lr",
            "optimizer", "gamma", "double_q", "td_lambda", "target_update", "target_update_interval", "team_reward",
            "standardise_rewards", "epsilon_start", "epsilon_end", "epsilon_anneal_steps", "mixer_embed",
            "hypernet_layers", "hypernet_embed", "state_clip")
    fcfg = ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg)
    L.append(f"Task as in the MAPPO section (simple_spread_v3, N=3, local_ratio 0.5, max_cycles 25, discrete actions). "
             f"BenchMARL 1.5.2 with its default QMIX / VDN and experiment settings ({bm['frames_per_batch']:,} frames "
             f"per iteration from {bm['n_envs']} envs, then {bm['n_optimizer_steps']:,} optimizer steps on batches of "
             f"{bm['train_batch_size']} transitions from a {bm['memory_size']:,}-frame replay, lr {bm['lr']:g}, gamma "
             f"{bm['gamma']:g}, soft target updates tau {bm['polyak_tau']:g}, MLP 256x256 tanh, epsilon "
             f"{bm['eps_init']:g} -> {bm['eps_end']:g}), except epsilon's anneal: "
             f"{bm['exploration_anneal_frames']:,} frames, fastmarl's default, instead of BenchMARL's a third of "
             "max_n_frames (which the wall-time budget makes meaningless). BenchMARL's wall-time budget: "
             + ", ".join(f"{a.upper()} {bm_budget[a]:,.0f} s" for a in results["algos"]) + ". fastmarl: `fastmarl train --algo qmix|vdn --env simple_spread_v3` "
             "(git " + (results[results["algos"][0]]["fastmarl"]["git"]
                        if len({results[a]["fastmarl"]["git"] for a in results["algos"]}) == 1
                        else ", ".join(f"{results[a]['fastmarl']['git']} for {a.upper()}" for a in results["algos"]))
             + "), stopped when its training return first reaches "
             f"both the target {th:g} and BenchMARL's best, or after {args.fastmarl_steps:,} env steps or "
             f"{args.fastmarl_q_budget:.0f} s. Its resolved config (from the run's config.json; the same for both "
             f"algorithms except the mixer): {fcfg}. Return and time as in the MAPPO section: the mean training-episode "
             "return per agent of the exploring policy, against the training loop's wall time.")
    L.append("")
    L.append(f"![training return vs wall time](figures/{figure.name})")
    L.append("")
    L.append(f"| run | env-steps/s | env steps in run | final / best return | time to {th:g} | time to BenchMARL's best |"
             " ended by |")
    L.append("|---|---|---|---|---|---|---|")
    notes = []
    for algo in results["algos"]:
        r = results[algo]
        best = r["benchmarl"]["summary"]["best_return"]
        for key, label, budget in (("benchmarl", f"BenchMARL {algo.upper()}", bm_budget[algo]),
                                   ("fastmarl", f"fastmarl {algo.upper()}", args.fastmarl_q_budget)):
            sm = r[key]["summary"]
            ended = "wall-time budget" if key == "benchmarl" else {
                "target": f"reaching {max(th, best):.2f}", "budget": "wall-time cap", "steps": "step budget"}[r[key]["stopped"]]
            L.append(f"| {label} | {sm['steps_per_s']:,.0f} | {sm['env_steps']:,} in {sm['time_s']:.0f} s | "
                     f"{sm['final_return']:.2f} / {sm['best_return']:.2f} | {_fmt_reach(sm['reach'][str(th)], budget)} | "
                     f"{_fmt_reach(sm['reach']['benchmarl_best'], budget)} ({best:.2f}) | {ended} |")
        b, f = r["benchmarl"]["summary"], r["fastmarl"]["summary"]
        speed = f["steps_per_s"] / b["steps_per_s"]
        fb, bb = f["reach"]["benchmarl_best"], b["reach"]["benchmarl_best"]
        first_best = r["benchmarl"]["rows"][0]["return"] >= best
        if first_best:
            ratio = (f"; BenchMARL's best return ({best:.2f}) is that of its first iteration, collected with epsilon "
                     "near its start (close to random play), and its return fell as epsilon decayed, so a time to "
                     "BenchMARL's best says nothing here")
        elif fb and bb:
            x = bb["time"] / max(fb["time"], 1e-9)
            ratio = (f"; to BenchMARL's best return ({best:.2f}) fastmarl took {fb['time']:.1f} s against BenchMARL's "
                     f"{bb['time']:.0f} s: {x:,.1f}x less wall time, "
                     + ("meeting" if x >= 10 else "short of") + " the issue's 10x target at that return")
        else:
            ratio = "; fastmarl did not reach BenchMARL's best return"
        ft = f["reach"][str(th)]
        target = (f"; fastmarl reached {th:g} after {ft['time']:.1f} s ({ft['step'] / 1e3:,.0f}k steps)" if ft else
                  f"; fastmarl did not reach {th:g} in this run")
        bt = b["reach"][str(th)]
        target += (f", BenchMARL after {bt['time']:.0f} s" if bt else f", BenchMARL not within its {bm_budget[algo]:,.0f} s")
        if not bt and ft:
            target += (f" ({bm_budget[algo] / ft['time']:,.1f}x fastmarl's time to {th:g}: a lower bound on the "
                       "ratio at that return)")
        notes.append(f"{algo.upper()}: fastmarl steps the task {speed:,.0f}x as fast ({f['steps_per_s']:,.0f} vs "
                     f"{b['steps_per_s']:,.0f} env-steps/s, training included){ratio}{target}.")
    L.append("")
    L.extend(n + "\n" for n in notes)
    f_ratio = cfg["batch_size"] * 25 / cfg["update_interval"]
    b_ratio = bm["n_optimizer_steps"] * bm["train_batch_size"] / bm["frames_per_batch"]
    L.append("Env-steps/s: each run's last logged env step count over its training wall time at that point. "
             f"BenchMARL's off-policy iteration is dominated by its {bm['n_optimizer_steps']:,} optimizer steps per "
             f"{bm['frames_per_batch']:,} collected frames; fastmarl's QMIX/VDN do one update of "
             f"{cfg['batch_size']} whole episodes every {cfg['update_interval']} env steps ({f_ratio:.0f} transitions "
             f"replayed per env step against BenchMARL's {b_ratio:.0f}), so the two differ in how much they train "
             "per env step as well as in speed: what is compared is the wall time to a return, each with its own "
             "defaults.")
    L.append("")
    text = "\n".join(L)
    update_results(path, VALUE_HEADING, text)
    return text


def run_value(args) -> None:
    if args.report_only:
        results = json.loads((args.out / "bench_training_value.json").read_text())
    else:
        results = {"threads": args.threads, "target": args.target, "algos": list(args.value_algos),
                   "date": time.strftime("%Y-%m-%d"), "load_before": os.getloadavg()[0],
                   "fastmarl_q_args": args.fastmarl_q_args}
        saved = args.out / "bench_training_value.json"
        if saved.is_file():  # keep the pairs of other algos measured with the same settings
            old = json.loads(saved.read_text())
            same = all(old.get(k) == results[k] for k in ("threads", "target", "fastmarl_q_args"))
            keep = [a for a in old.get("algos", []) if a not in args.value_algos] if same else []
            for a in keep:
                results[a] = old[a]
                results[a].setdefault("run_date", old["date"])
                results[a].setdefault("benchmarl_budget", old.get("benchmarl_budget", args.benchmarl_budget))
            results["algos"] = keep + results["algos"]
        results["benchmarl_budget"] = args.benchmarl_budget
        for algo in args.value_algos:
            bm_out = args.out / f"benchmarl_{algo}.jsonl"
            if args.skip_benchmarl:
                rows = [json.loads(line) for line in bm_out.read_text().splitlines() if line.strip()]
                bench = {"rows": rows, "process_wall_s": None,
                         "meta": json.loads(bm_out.with_suffix(".meta.json").read_text())}
            else:
                bench = run_benchmarl(args, bm_out, algo)
            best = max(r["return"] for r in bench["rows"])
            fast = run_fastmarl_q(args, args.out, algo, stop_at=max(args.target, best))
            results[algo] = {"benchmarl": bench, "fastmarl": fast, "benchmarl_budget": args.benchmarl_budget,
                             "run_date": results["date"]}
            for key in ("benchmarl", "fastmarl"):
                sm = summarise(results[algo][key]["rows"], [args.target])
                sm["reach"]["benchmarl_best"] = summarise(results[algo][key]["rows"], [best])["reach"][str(best)]
                results[algo][key]["summary"] = sm
        results["load_after"] = os.getloadavg()[0]
        (args.out / "bench_training_value.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_value(results, args.value_figure)
    print(write_value_section(results, args, args.results_md, args.value_figure))


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
    ap.add_argument("--algos", nargs="+", choices=["mappo", "qmix", "vdn"], default=["mappo"],
                    help="mappo: the MAPPO comparison; qmix / vdn: the value-based one (runs/bench/bench_training_value.json)")
    ap.add_argument("--target", type=float, default=-17.0, help="qmix/vdn: the return to reach (the issue's target)")
    ap.add_argument("--fastmarl-q-args", default="",
                    help="qmix/vdn: extra `fastmarl train` options, e.g. \"--num-envs 32 --no-recurrent --update-interval 50\"")
    ap.add_argument("--fastmarl-q-budget", type=float, default=600.0, help="qmix/vdn: fastmarl's wall-time cap (s)")
    ap.add_argument("--epsilon-anneal-steps", type=_parse_count, default=50_000,
                    help="qmix/vdn: epsilon's anneal in env steps, for both libraries")
    ap.add_argument("--value-figure", type=Path, default=ROOT / "docs" / "figures" / "bench_training_benchmarl_value.png")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.value_algos = [a for a in args.algos if a != "mappo"]
    if args.value_algos:
        run_value(args)
    if "mappo" not in args.algos:
        return
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
