"""Compare algorithms over seeds on one or more envs: same budget, each algo's `fastmarl train` defaults.

    python experiments/compare.py --algos happo mappo --envs simple_spread_v3 simple_reference_v3 \\
        simple_speaker_listener_v4 --seeds 0 1 2 3 4 --total-steps 1e6 --report docs/happo.md
    python experiments/compare.py ... --report-only      # rebuild the report from the finished runs

Every (env, algo, seed) trains through the library (``fastmarl.train`` with the algo's config class
from ``fastmarl.config``) in its own process with one torch thread, ``--workers`` processes at a
time, in the order env 1: algo 1 s0, algo 2 s0, ..., algo 1 s1, ... so the algorithms share the
machine's load alike. A finished run (its ``final.json``) is kept and not trained again.

Measured per run: the greedy and stochastic evaluation return per agent (``--eval-episodes``
episodes every ``--eval-interval`` env steps, the loop's own evaluation, with its wall time since
training started) and, after training, ``--final-episodes`` fresh episodes of the final policy.

Statistics (``fastmarl.analysis.stats``): final-return IQM with 95% stratified-bootstrap CIs and the
probability of improvement P(first algo > each other) from ``rliable``; curves are the mean over
seeds of the deterministic evaluation return with a 95% percentile-bootstrap band, vs env steps and
vs wall time.

Results in the field's format: every run's ``marl_eval.json`` (written by the training loop) is merged
into ``RUNS_DIR/marl_eval.json`` (environment -> task -> algorithm -> seed_N -> step_i with the
per-episode returns, and the absolute metrics), the layout marl-eval reads and BenchMARL and Mava
export (:mod:`fastmarl.train.marl_eval`).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastmarl.analysis.stats import bootstrap_mean_ci, interpolate_curves, iqm_ci, prob_improvement


@dataclass(frozen=True)
class Job:
    env: str
    algo: str
    seed: int
    total_steps: int
    eval_interval: int
    eval_episodes: int
    final_episodes: int
    env_kwargs: tuple[tuple[str, object], ...]
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.env} {self.algo} s{self.seed}"


def run_job(job: Job) -> None:
    """Train one (env, algo, seed), then evaluate the final policy; writes run_dir/final.json."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    log = open(job.run_dir.parent / f"{job.run_dir.name}.log", "w", buffering=1)
    sys.stdout = sys.stderr = log  # the parent prints progress; a run's own messages go to its log
    import torch

    from fastmarl.config import config_class
    from fastmarl.train import evaluate_run, train

    torch.set_num_threads(1)
    cfg = config_class(job.algo)(algo=job.algo, env=job.env, env_kwargs=dict(job.env_kwargs), seed=job.seed,
                                 total_steps=job.total_steps, eval_interval=job.eval_interval,
                                 eval_episodes=job.eval_episodes, checkpoint_interval=0, keep_checkpoints=1,
                                 name=job.run_dir.name, runs_dir=str(job.run_dir.parent), gif=False,
                                 tensorboard=False, progress=False, threads=1)
    t0 = time.perf_counter()
    res = train(cfg)
    train_wall = time.perf_counter() - t0
    final = evaluate_run(res.run_dir, episodes=job.final_episodes)
    out = {"env": job.env, "algo": job.algo, "seed": job.seed, "env_steps": res.global_step,
           "train_wall_s": train_wall, "steps_per_s": res.global_step / train_wall,
           "final_episodes": job.final_episodes, **{k: v for k, v in final.items() if k.startswith("return")}}
    (job.run_dir / "final.json").write_text(json.dumps(out, indent=2) + "\n")


def write_marl_eval(jobs: list[Job], out: Path) -> Path:
    """Every run's marl_eval.json merged into ``out``."""
    from fastmarl.train.marl_eval import FILE, merge_files

    missing = [j.label for j in jobs if not (j.run_dir / FILE).is_file()]
    if missing:
        raise SystemExit(f"runs without {FILE} (trained before fastmarl wrote it, or without evaluations): {missing}")
    return merge_files([j.run_dir / FILE for j in jobs], out)


def run_all(jobs: list[Job], workers: int) -> None:
    todo = [j for j in jobs if not (j.run_dir / "final.json").is_file()]
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} already finished; {workers} at a time; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    ctx = mp.get_context("spawn")
    running: list[tuple[Job, mp.Process, float]] = []
    while todo or running:
        while todo and len(running) < workers:
            job = todo.pop(0)
            p = ctx.Process(target=run_job, args=(job,))
            p.start()
            running.append((job, p, time.perf_counter()))
        time.sleep(0.5)
        for item in list(running):
            job, p, t0 = item
            if p.exitcode is None:
                continue
            running.remove(item)
            if p.exitcode != 0:
                raise SystemExit(f"{job.label} failed (exit {p.exitcode}); see {job.run_dir}.log")
            fin = json.loads((job.run_dir / "final.json").read_text())
            print(f"{job.label}: final det {fin['return_det']:.2f} stoch {fin['return_stoch']:.2f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


def read_eval(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, wall time, deterministic return) of a run's eval.csv."""
    with open(run_dir / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    if not rows or "return_det" not in rows[0]:
        raise SystemExit(f"{run_dir}/eval.csv has no 'return_det' column (a competitive env? this script "
                         "compares cooperative returns)")
    col = lambda k: np.array([float(r[k]) for r in rows])  # noqa: E731
    return col("step"), col("time"), col("return_det")


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:.2f}, {hi:.2f}]"


def plot(env: str, runs: dict[str, list[Job]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for algo, jobs in runs.items():
        curves = [read_eval(j.run_dir) for j in jobs]
        for ax, (xi, scale, label) in zip(axes, ((0, 1e-6, "env steps (millions)"), (1, 1.0, "wall time (s)"))):
            xs = [(c[xi], c[2]) for c in curves]
            grid = np.linspace(max(x[0] for x, _ in xs), min(x[-1] for x, _ in xs), 100)
            mean, low, high = bootstrap_mean_ci(interpolate_curves(xs, grid))
            ax.plot(grid * scale, mean, label=algo.upper())
            ax.fill_between(grid * scale, low, high, alpha=0.25, linewidth=0)
            ax.set_xlabel(label)
    axes[0].set_ylabel("greedy eval return per agent")
    axes[0].legend()
    fig.suptitle(f"{env}: mean over seeds, 95% bootstrap band")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def report(args, jobs: list[Job]) -> str:
    algos, lines = args.algos, []
    lines += [f"# {args.title}", "",
              f"Generated by `python experiments/compare.py {' '.join(sys.argv[1:])}` on "
              f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPU cores, torch threads 1 per "
              f"run, {args.workers} runs at once. Every number is read from the saved runs in `{args.runs_dir}`.", "",
              f"Protocol: each algo with its `fastmarl train --algo ALGO` defaults, {args.total_steps:,} env steps "
              f"per run, seeds {', '.join(map(str, args.seeds))}. Curves: the loop's greedy evaluation "
              f"({args.eval_episodes} episodes every {args.eval_interval:,} env steps). Final: {args.final_episodes:,} "
              "fresh episodes of the final policy, deterministic (greedy) and stochastic. IQM over seeds with 95% "
              "stratified-bootstrap CIs and the probability of improvement from `rliable` (20,000 resamples).", ""]
    for env in args.envs:
        runs = {a: [j for j in jobs if j.env == env and j.algo == a] for a in algos}
        fins = {a: [json.loads((j.run_dir / "final.json").read_text()) for j in js] for a, js in runs.items()}
        fig = args.figures / f"compare_{Path(args.report).stem}_{env}.png"
        plot(env, runs, fig)
        rel = os.path.relpath(fig, Path(args.report).parent)
        lines += [f"## {env}", "", f"![curves]({rel})", "",
                  "| algo | policy | final IQM [95% CI] | mean [95% CI] | per seed | train wall per run (s) | "
                  "env-steps/s |", "|---|---|---|---|---|---|---|"]
        for pol in ("det", "stoch"):
            stats = iqm_ci({a: [f[f"return_{pol}"] for f in fins[a]] for a in algos})
            for a in algos:
                s = stats[a]
                per_seed = ", ".join(f"{f[f'return_{pol}']:.2f}" for f in fins[a])
                wall = np.mean([f["train_wall_s"] for f in fins[a]])
                sps = np.mean([f["steps_per_s"] for f in fins[a]])
                lines.append(f"| {a.upper()} | {'deterministic' if pol == 'det' else 'stochastic'} | "
                             f"{s['iqm']:.2f} {_ci(*s['iqm_ci'])} | {s['mean']:.2f} {_ci(*s['mean_ci'])} | "
                             f"{per_seed} | {wall:.0f} | {sps:,.0f} |")
        lines.append("")
        first = algos[0]
        for other in algos[1:]:
            p = prob_improvement([f["return_det"] for f in fins[first]], [f["return_det"] for f in fins[other]])
            verdict = ("the CI excludes 0.5: a difference" if p["ci"][0] > 0.5 or p["ci"][1] < 0.5
                       else "the CI includes 0.5: no difference shown")
            lines.append(f"P({first.upper()} > {other.upper()}), deterministic final return: {p['p']:.2f} "
                         f"{_ci(*p['ci'])}; {verdict}.")
        lines.append("")
    return "\n".join(lines)


def _count(s: str) -> int:
    v = float(s)
    if v != int(v) or v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {s}")
    return int(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algos", nargs="+", required=True, help="the first is compared with each other")
    ap.add_argument("--envs", nargs="+", required=True)
    ap.add_argument("--env-kwargs", nargs="*", default=[], help="KEY=VALUE, for every env")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--total-steps", type=_count, default=1_000_000)
    ap.add_argument("--eval-interval", type=_count, default=100_000)
    ap.add_argument("--eval-episodes", type=_count, default=100)
    ap.add_argument("--final-episodes", type=_count, default=1000)
    ap.add_argument("--workers", type=_count, default=2)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/compare"))
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--figures", type=Path, default=Path("docs/figures"))
    ap.add_argument("--title", default=None)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    from fastmarl.config import ALGORITHMS, parse_env_kwargs

    unknown = [a for a in args.algos if a not in ALGORITHMS]
    if unknown:
        ap.error(f"unknown algo(s) {unknown}; choose from {sorted(ALGORITHMS)}")
    if len(args.algos) < 2:
        ap.error("--algos needs at least two algorithms to compare")
    args.title = args.title or " vs ".join(a.upper() for a in args.algos)
    kwargs = tuple(sorted(parse_env_kwargs(args.env_kwargs).items()))
    jobs = [Job(env, algo, seed, args.total_steps, args.eval_interval, args.eval_episodes, args.final_episodes,
                kwargs, args.runs_dir / f"{env}_{algo}_s{seed}")
            for env in args.envs for seed in args.seeds for algo in args.algos]
    if not args.report_only:
        run_all(jobs, args.workers)
    missing = [j.label for j in jobs if not (j.run_dir / "final.json").is_file()]
    if missing:
        raise SystemExit(f"unfinished runs: {missing}")
    merged = write_marl_eval(jobs, args.runs_dir / "marl_eval.json")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report(args, jobs) + "\n")
    print(f"wrote {args.report} and {merged} (marl-eval's layout)")


if __name__ == "__main__":
    main()
