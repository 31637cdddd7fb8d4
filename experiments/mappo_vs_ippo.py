"""MAPPO vs IPPO on simple_spread_v3 (N=3): same budget, same settings, several seeds.

    python experiments/mappo_vs_ippo.py                      # 5 seeds x 2 algos x 2M steps, 2 at a time
    python experiments/mappo_vs_ippo.py --seeds 0 1 2 3 4 5 6 7 --workers 2 --total-steps 2e6
    python experiments/mappo_vs_ippo.py --report-only        # rebuild the report from finished runs

The two algorithms differ only in the critic's input (fastmarl.algos.ppo): the
MAPPO critic sees the global state (plus the agent's own observation), the IPPO
critic its agent's observation; everything else is the default
``fastmarl train`` configuration. Each (algo, seed) trains in its own process
with one torch thread, ``--workers`` processes at a time, in the order
mappo s0, ippo s0, mappo s1, ... so both algorithms share the machine's load
alike. A finished run (its ``final.json``) is kept and not trained again.

Measured per run: the training-episode return per agent (stochastic policy;
mean over agents of each agent's summed episode reward, the mpe2 convention)
after every iteration, with its wall time since the training loop started (this
includes the periodic evaluations, equal for both algorithms); after training,
a 1,000-episode evaluation of the final policy, deterministic and stochastic.

Statistics: learning curves are the mean over seeds with a 95% percentile
bootstrap band (resampling seeds, per point on a common grid of env steps or of
wall time). The final-return IQM, its 95% stratified-bootstrap CI and the
probability of improvement P(MAPPO > IPPO) with its CI come from ``rliable``
(``pip install rliable==1.2.0 "pandas<3"``: its ``arch`` dependency fails to
import with pandas 3).

Writes the runs under ``--runs-dir`` (default runs/mappo_vs_ippo), the report
``--report`` (default docs/mappo_vs_ippo.md) and its figures in ``--figures``
(default docs/figures).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ALGOS = ("mappo", "ippo")
CI_LEVEL = 0.95


# -- one run (in its own process) ---------------------------------------------------

@dataclass(frozen=True)
class Job:
    algo: str
    seed: int
    total_steps: int
    eval_interval: int
    final_episodes: int
    threads: int
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.algo} s{self.seed}"


def run_job(job: Job) -> None:
    """Train one (algo, seed), then evaluate the final policy; writes run_dir/final.json."""
    t_start = time.perf_counter()
    job.run_dir.mkdir(parents=True, exist_ok=True)
    log = open(job.run_dir.parent / f"{job.run_dir.name}.log", "w", buffering=1)
    sys.stdout = sys.stderr = log  # the parent draws the progress; the run's own messages go to a log file
    import torch

    torch.set_num_threads(job.threads)
    from fastmarl.config import TrainConfig
    from fastmarl.train import evaluate_run, train

    cfg = TrainConfig(algo=job.algo, env="simple_spread_v3", seed=job.seed, total_steps=job.total_steps,
                      eval_interval=job.eval_interval, checkpoint_interval=0, keep_checkpoints=1,
                      name=job.run_dir.name, runs_dir=str(job.run_dir.parent), gif=False, tensorboard=False,
                      progress=False, threads=job.threads)
    res = train(cfg)
    process_wall = time.perf_counter() - t_start
    final = evaluate_run(res.run_dir, episodes=job.final_episodes)
    train_rows = read_csv(job.run_dir / "metrics.csv")
    train_time = float(train_rows[-1]["time"])
    out = {"algo": job.algo, "seed": job.seed, "env_steps": res.global_step, "train_time_s": train_time,
           "process_wall_s": process_wall, "steps_per_s": res.global_step / train_time, "threads": job.threads,
           "final_episodes": job.final_episodes, **{k: final[k] for k in
                                                     ("return_det", "return_std_det", "return_stoch", "return_std_stoch")}}
    (job.run_dir / "final.json").write_text(json.dumps(out, indent=2) + "\n")


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _last_row(path: Path) -> dict[str, str] | None:
    rows = read_csv(path)
    return rows[-1] if rows else None


def run_all(jobs: list[Job], workers: int) -> None:
    """Run the jobs ``workers`` at a time, with a live table of their progress."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    ctx = mp.get_context("spawn")
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:  # spawned workers import this module by name when it was imported (tests)
        sys.path.insert(0, here)
    todo = [j for j in jobs if not (j.run_dir / "final.json").is_file()]
    done_before = len(jobs) - len(todo)
    columns = (TextColumn("[bold]{task.description:<9}"), BarColumn(bar_width=20), MofNCompleteColumn(),
               TextColumn("{task.fields[sps]:>7} steps/s"), TextColumn("train return {task.fields[ret]:>7}"),
               TextColumn("eval {task.fields[ev]:>7}"), TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, refresh_per_second=2) as bar:
        if done_before:
            bar.console.print(f"{done_before} of {len(jobs)} runs already finished (final.json); training {len(todo)}")
        tasks = {j: bar.add_task(j.label, total=j.total_steps, start=False, sps="-", ret="-", ev="-",
                                 status="queued") for j in todo}
        running: dict[Job, mp.Process] = {}
        queue = list(todo)
        failed = []
        while queue or running:
            while queue and len(running) < workers:
                job = queue.pop(0)
                if job.run_dir.exists():  # an unfinished run from an interrupted invocation: start over
                    shutil.rmtree(job.run_dir)
                job.run_dir.parent.mkdir(parents=True, exist_ok=True)
                proc = ctx.Process(target=run_job, args=(job,), name=job.label)
                proc.start()
                running[job] = proc
                bar.start_task(tasks[job])
                bar.update(tasks[job], status="running")
            time.sleep(1.0)
            for job, proc in list(running.items()):
                row = _last_row(job.run_dir / "metrics.csv")
                ev = _last_row(job.run_dir / "eval.csv")
                fields = {}
                if row:
                    fields = dict(completed=int(row["step"]), sps=f"{float(row['sps']):,.0f}",
                                  ret=f"{float(row['return']):.2f}" if row.get("return") else "-")
                if ev:
                    fields["ev"] = f"{float(ev['return_det']):.2f}"
                bar.update(tasks[job], **fields)
                if not proc.is_alive():
                    proc.join()
                    del running[job]
                    ok = proc.exitcode == 0 and (job.run_dir / "final.json").is_file()
                    if ok:
                        fin = json.loads((job.run_dir / "final.json").read_text())
                        bar.update(tasks[job], completed=job.total_steps,
                                   status=f"done: {fin['train_time_s']:.0f}s, final eval {fin['return_det']:.2f}")
                    else:
                        failed.append(job.label)
                        bar.update(tasks[job], status=f"[red]failed (exit code {proc.exitcode})")
                    bar.stop_task(tasks[job])
    if failed:
        raise SystemExit(f"runs failed: {failed}; see the traceback above")


# -- statistics ----------------------------------------------------------------------

def interpolate_curves(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """Per-run curves (x increasing, y) -> (runs, len(grid)) by linear interpolation.
    Grid points outside a run's x range take its first/last value."""
    return np.stack([np.interp(grid, x, y) for x, y in curves])


def bootstrap_mean_ci(values: np.ndarray, reps: int = 5000, level: float = CI_LEVEL,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values (runs, points) -> (mean, low, high) per point: percentile bootstrap of
    the mean over runs (runs resampled with replacement, the same draw for every point)."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    idx = rng.integers(0, n, size=(reps, n))
    means = values[idx].mean(axis=1)  # (reps, points)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha], axis=0)
    return values.mean(axis=0), low, high


def final_score_stats(scores: dict[str, np.ndarray], reps: int = 20000) -> dict:
    """rliable: IQM with a stratified-bootstrap CI per algorithm and P(mappo > ippo) with its CI.
    ``scores``: algo -> (runs,) final returns (one task)."""
    try:
        from rliable import library as rly
        from rliable import metrics
    except ImportError as e:
        raise SystemExit(f"the report's statistics need rliable ({e}): pip install rliable==1.2.0 'pandas<3'")
    np.random.seed(0)  # rliable's bootstrap draws from numpy's global RNG
    cols = {a: np.asarray(s, dtype=np.float64)[:, None] for a, s in scores.items()}
    iqm = lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])  # noqa: E731
    point, ci = rly.get_interval_estimates(cols, iqm, reps=reps, confidence_interval_size=CI_LEVEL)
    out = {a: {"iqm": float(point[a][0]), "iqm_ci": [float(ci[a][0, 0]), float(ci[a][1, 0])],
               "mean": float(point[a][1]), "mean_ci": [float(ci[a][0, 1]), float(ci[a][1, 1])]} for a in cols}
    a, b = ALGOS
    # rliable's probability of improvement takes scores that grow with quality: returns do
    pair = f"{a},{b}"
    p, p_ci = rly.get_interval_estimates({pair: (cols[a], cols[b])}, metrics.probability_of_improvement, reps=reps,
                                         confidence_interval_size=CI_LEVEL)
    out["prob_improvement"] = {"pair": [a, b], "p": float(np.asarray(p[pair]).reshape(-1)[0]),
                               "ci": [float(np.asarray(p_ci[pair]).reshape(-1)[0]),
                                      float(np.asarray(p_ci[pair]).reshape(-1)[1])]}
    return out


# -- the report ------------------------------------------------------------------------

def load_runs(jobs: list[Job]) -> dict[str, list[dict]]:
    """algo -> finished runs: final.json plus the training curve (step, time, return)."""
    out: dict[str, list[dict]] = {a: [] for a in ALGOS}
    for job in jobs:
        fin_path = job.run_dir / "final.json"
        if not fin_path.is_file():
            continue
        fin = json.loads(fin_path.read_text())
        rows = [r for r in read_csv(job.run_dir / "metrics.csv") if r.get("return")]
        fin["curve"] = {k: np.array([float(r[k]) for r in rows]) for k in ("step", "time", "return")}
        evals = read_csv(job.run_dir / "eval.csv")
        fin["eval_curve"] = {k: np.array([float(r[k]) for r in evals]) for k in ("step", "time", "return_det")}
        out[job.algo].append(fin)
    return out


def first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float | None:
    """First x at which y >= target (None if never)."""
    hit = np.nonzero(y >= target)[0]
    return float(x[hit[0]]) if hit.size else None


def curve_bands(runs: dict[str, list[dict]], points: int = 200) -> dict:
    """algo -> {"steps": (grid, mean, low, high), "time": (...)}; training return."""
    out = {}
    for algo, rs in runs.items():
        steps = [(r["curve"]["step"], r["curve"]["return"]) for r in rs]
        times = [(r["curve"]["time"], r["curve"]["return"]) for r in rs]
        s_grid = np.linspace(max(c[0][0] for c in steps), min(c[0][-1] for c in steps), points)
        t_grid = np.linspace(max(c[0][0] for c in times), min(c[0][-1] for c in times), points)
        out[algo] = {"steps": (s_grid, *bootstrap_mean_ci(interpolate_curves(steps, s_grid))),
                     "time": (t_grid, *bootstrap_mean_ci(interpolate_curves(times, t_grid)))}
    return out


COLORS = {"mappo": "tab:blue", "ippo": "tab:orange"}


def plot_figures(bands: dict, stats: dict, figures: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, xlabel, scale in [(axes[0], "steps", "env steps (millions)", 1e-6),
                                   (axes[1], "time", "wall time (s)", 1.0)]:
        for algo, b in bands.items():
            x, mean, low, high = b[key]
            ax.plot(x * scale, mean, color=COLORS.get(algo), label=algo.upper())
            ax.fill_between(x * scale, low, high, color=COLORS.get(algo), alpha=0.25, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("training return per agent")
        ax.grid(alpha=0.3)
    axes[0].legend(title="mean, 95% CI")
    fig.suptitle("simple_spread_v3 (N=3): MAPPO vs IPPO", fontsize=11)
    fig.tight_layout()
    curves = figures / f"{stem}_curves.png"
    fig.savefig(curves, dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 2.2), gridspec_kw={"width_ratios": [3, 2]})
    for i, algo in enumerate(ALGOS):
        s = stats[algo]
        axes[0].errorbar([s["iqm"]], [i], xerr=[[s["iqm"] - s["iqm_ci"][0]], [s["iqm_ci"][1] - s["iqm"]]],
                         fmt="o", color=COLORS[algo], capsize=5, linewidth=3)
    axes[0].set_yticks(range(len(ALGOS)), [a.upper() for a in ALGOS])
    axes[0].set_ylim(-0.6, len(ALGOS) - 0.4)
    axes[0].set_xlabel("final return per agent: IQM over seeds, 95% CI")
    axes[0].grid(alpha=0.3, axis="x")
    pi = stats["prob_improvement"]
    axes[1].errorbar([pi["p"]], [0], xerr=[[pi["p"] - pi["ci"][0]], [pi["ci"][1] - pi["p"]]], fmt="o",
                     color="tab:green", capsize=5, linewidth=3)
    axes[1].axvline(0.5, color="grey", linestyle="--", linewidth=1)
    axes[1].set_xlim(0, 1)
    axes[1].set_yticks([0], ["P(MAPPO > IPPO)"])
    axes[1].set_xlabel("probability of improvement, 95% CI")
    axes[1].grid(alpha=0.3, axis="x")
    fig.tight_layout()
    final = figures / f"{stem}_final.png"
    fig.savefig(final, dpi=80)
    plt.close(fig)
    return [curves, final]


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:.2f}, {hi:.2f}]"


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def conclusion(stats: dict, runs: dict[str, list[dict]]) -> str:
    """The sentence the numbers support, phrased by how the intervals lie."""
    a, b = ALGOS
    sa, sb = stats[a], stats[b]
    pi = stats["prob_improvement"]
    n = min(len(runs[a]), len(runs[b]))
    better, worse = (a, b) if sa["iqm"] >= sb["iqm"] else (b, a)
    lines = []
    if _overlap(sa["iqm_ci"], sb["iqm_ci"]):
        lines.append(f"The 95% CIs of the final-return IQM overlap ({a.upper()} {_ci(*sa['iqm_ci'])}, "
                     f"{b.upper()} {_ci(*sb['iqm_ci'])}): with {n} seeds each, these data do not separate the "
                     f"two algorithms' final returns; {better.upper()} is ahead by "
                     f"{abs(sa['iqm'] - sb['iqm']):.2f} in IQM, which is within the seed-to-seed spread.")
    else:
        lines.append(f"The 95% CIs of the final-return IQM do not overlap ({a.upper()} {_ci(*sa['iqm_ci'])}, "
                     f"{b.upper()} {_ci(*sb['iqm_ci'])}): on this task, budget and these settings, "
                     f"{better.upper()} reaches a higher final return than {worse.upper()} "
                     f"(by {abs(sa['iqm'] - sb['iqm']):.2f} per agent in IQM).")
    if pi["ci"][0] > 0.5:
        lines.append(f"P({a.upper()} > {b.upper()}) = {pi['p']:.2f}, CI {_ci(*pi['ci'])}, lies above 0.5: "
                     f"a run of {a.upper()} is more likely than not to end better than a run of {b.upper()}.")
    elif pi["ci"][1] < 0.5:
        lines.append(f"P({a.upper()} > {b.upper()}) = {pi['p']:.2f}, CI {_ci(*pi['ci'])}, lies below 0.5: "
                     f"a run of {b.upper()} is more likely than not to end better than a run of {a.upper()}.")
    else:
        lines.append(f"P({a.upper()} > {b.upper()}) = {pi['p']:.2f}, CI {_ci(*pi['ci'])}, includes 0.5, "
                     "so neither is shown to be better more often than not.")
    lines.append(f"With {n} seeds the bootstrap intervals are themselves rough (a percentile bootstrap over "
                 "few runs tends to be too narrow); more seeds (`--seeds`) would tighten them.")
    return " ".join(lines)


def write_report(runs: dict[str, list[dict]], args, report: Path, figures: Path) -> str:
    bands = curve_bands(runs)
    scores = {a: np.array([r["return_det"] for r in runs[a]]) for a in ALGOS}
    stats = final_score_stats(scores, args.bootstrap_reps)
    scores_stoch = {a: np.array([r["return_stoch"] for r in runs[a]]) for a in ALGOS}
    stats_stoch = final_score_stats(scores_stoch, args.bootstrap_reps)
    figs = plot_figures(bands, stats, figures, report.stem)
    rel = lambda p: os.path.relpath(p, report.parent)  # noqa: E731
    env_steps = runs[ALGOS[0]][0]["env_steps"] if runs[ALGOS[0]] else args.total_steps
    versions = {}
    for mod in ("torch", "numpy", "rliable"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:  # noqa: BLE001
            versions[mod] = "?"
    L = []
    L.append("# MAPPO vs IPPO on simple_spread_v3\n")
    L.append(f"Generated by `python experiments/mappo_vs_ippo.py --seeds {' '.join(map(str, args.seeds))} "
             f"--total-steps {env_steps} --workers {args.workers}` "
             f"on {time.strftime('%Y-%m-%d')} ({platform.machine()}, {os.cpu_count()} CPU cores, "
             f"torch {versions['torch']}, numpy {versions['numpy']}, rliable {versions['rliable']}).\n")
    L.append("**Setup.** simple_spread_v3 with N=3 agents, local_ratio 0.5, max_cycles 25, discrete actions. "
             "Both algorithms use the default `fastmarl train` settings (200 envs x 25 steps per update, "
             "4 epochs x 4 minibatches, Adam lr 3e-3 annealed, ReLU MLP 2x64, shared parameters with a one-hot "
             "agent id, value normalisation, entropy 0.01) and differ only in the critic's input: MAPPO's sees "
             "the global state plus the agent's observation, IPPO's the agent's observation. "
             f"{env_steps:,} env steps per run; {len(args.seeds)} seeds per algorithm; each run in its own "
             f"process with {args.threads} torch thread(s), {args.workers} runs at a time, MAPPO and IPPO "
             "interleaved so they share the machine's load alike.\n")
    L.append("**Return** is per agent: the mean over agents of each agent's summed episode reward (mpe2's "
             "convention; a uniform random policy scores about -26, the scripted policy of `fastmarl.envs.scripted` "
             "about -7.7). Learning curves use the training episodes' return (stochastic policy, ~200 "
             f"episodes per 5,000-step iteration); final scores a {args.final_episodes:,}-episode evaluation "
             "of the final policy, deterministic (most likely action) and stochastic.\n")
    L.append("## Learning curves\n")
    L.append(f"![learning curves]({rel(figs[0])})\n")
    L.append("Mean over seeds with 95% percentile-bootstrap bands (seeds resampled; each seed's curve "
             "interpolated onto a common grid, which ends where the shortest run of the algorithm ends: in the "
             "wall-time panel, where its fastest seed finished). Wall time is the training loop's, periodic evaluations "
             f"(every {args.eval_interval:,} steps, 100 episodes deterministic + 100 stochastic) included. The time "
             "to a return is each seed's first training iteration at or above it, averaged over seeds.\n")
    marks = [s for s in (250_000, 500_000, 1_000_000) if s < min(b["steps"][0][-1] for b in bands.values())]
    mark_names = " / ".join([f"{s // 1000:,}k" for s in marks] + ["final"])
    L.append(f"| algo | mean training return at {mark_names} steps | mean wall time to -20 / -18 / -16 (s) |")
    L.append("|---|---|---|")
    for algo in ALGOS:
        b = bands[algo]["steps"]
        at = [np.interp(s, b[0], b[1]) for s in (*marks, b[0][-1])]
        reach = []
        for target in (-20.0, -18.0, -16.0):
            ts = [first_crossing(r["curve"]["time"], r["curve"]["return"], target) for r in runs[algo]]
            got = [t for t in ts if t is not None]
            reach.append(f"{np.mean(got):.1f}" + ("" if len(got) == len(ts) else f" ({len(got)}/{len(ts)} seeds)")
                         if got else "not reached")
        L.append(f"| {algo.upper()} | {' / '.join(f'{v:.2f}' for v in at)} | {' / '.join(reach)} |")
    L.append("")
    L.append("## Final return\n")
    L.append(f"![final return]({rel(figs[1])})\n")
    L.append(f"IQM (interquartile mean) over seeds of the final policy's {args.final_episodes:,}-episode evaluation "
             "return, with "
             "95% stratified-bootstrap CIs, and the probability of improvement P(MAPPO > IPPO) (the chance that "
             "a MAPPO run ends with a higher return than an IPPO run), computed with `rliable` "
             f"(`get_interval_estimates`, {args.bootstrap_reps:,} bootstrap resamples).\n")
    L.append("| algo | policy | IQM [95% CI] | mean [95% CI] | per seed |")
    L.append("|---|---|---|---|---|")
    for label, st, sc in (("deterministic", stats, scores), ("stochastic", stats_stoch, scores_stoch)):
        for algo in ALGOS:
            s = st[algo]
            per_seed = ", ".join(f"{v:.2f}" for v in sc[algo])
            L.append(f"| {algo.upper()} | {label} | {s['iqm']:.2f} {_ci(*s['iqm_ci'])} | "
                     f"{s['mean']:.2f} {_ci(*s['mean_ci'])} | {per_seed} |")
    L.append("")
    for label, st in (("deterministic", stats), ("stochastic", stats_stoch)):
        pi = st["prob_improvement"]
        L.append(f"P(MAPPO > IPPO), {label} policy: **{pi['p']:.2f}** {_ci(*pi['ci'])}  ")
    L.append("")
    L.append("## Wall time and throughput\n")
    L.append("| algo | training wall time (s), mean ± std | env-steps/s, mean ± std | process wall incl. start-up (s) |")
    L.append("|---|---|---|---|")
    for algo in ALGOS:
        t = np.array([r["train_time_s"] for r in runs[algo]])
        sps = np.array([r["steps_per_s"] for r in runs[algo]])
        pw = np.array([r["process_wall_s"] for r in runs[algo]])
        L.append(f"| {algo.upper()} | {t.mean():.1f} ± {t.std(ddof=1) if t.size > 1 else 0:.1f} | "
                 f"{sps.mean():,.0f} ± {sps.std(ddof=1) if sps.size > 1 else 0:,.0f} | {pw.mean():.1f} |")
    L.append("")
    L.append(f"Throughput counts env steps over the training loop's wall time (rollouts, updates and periodic "
             f"evaluations), {args.threads} torch thread per run, {args.workers} runs sharing the machine's "
             f"{os.cpu_count()} cores (and whatever else ran on it). MAPPO's critic input is larger "
             "(state + observation), so its update costs a little more per step.\n")
    cond_path = Path(args.runs_dir) / "conditions.json"
    if cond_path.is_file():
        c = json.loads(cond_path.read_text())
        L.append(f"Machine load (1-minute load average) {c['load_average_before']:.2f} before the runs and "
                 f"{c['load_average_after']:.2f} after (15-minute: {c['load_average_15min_after']:.2f}); the "
                 f"whole experiment took {c['experiment_wall_s'] / 60:.1f} min.\n")
    L.append("## Conclusion\n")
    L.append(conclusion(stats, runs) + "\n")
    text = "\n".join(L)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    summary = {"stats_det": stats, "stats_stoch": stats_stoch,
               "runs": {a: [{k: v for k, v in r.items() if k not in ("curve", "eval_curve")} for r in rs]
                        for a, rs in runs.items()}}
    (Path(args.runs_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return text


def _parse_count(s: str) -> int:
    v = float(s)
    if v != int(v):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {s}")
    return int(v)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--total-steps", type=_parse_count, default=2_000_000, help="env steps per run, e.g. 2e6")
    ap.add_argument("--workers", type=int, default=2, help="runs trained at once, one process each")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--eval-interval", type=_parse_count, default=250_000,
                    help="env steps between the runs' periodic evaluations")
    ap.add_argument("--final-episodes", type=int, default=1000, help="episodes of the final evaluation")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/mappo_vs_ippo"))
    ap.add_argument("--report", type=Path, default=Path("docs/mappo_vs_ippo.md"))
    ap.add_argument("--figures", type=Path, default=Path("docs/figures"))
    ap.add_argument("--bootstrap-reps", type=int, default=20_000, help="bootstrap resamples of the final-score CIs")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    args = ap.parse_args(argv)
    if args.workers < 1 or args.threads < 1:
        ap.error("--workers and --threads must be >= 1")
    if len(args.seeds) < 2:
        ap.error("at least 2 seeds are needed for confidence intervals")
    jobs = [Job(algo, seed, args.total_steps, args.eval_interval, args.final_episodes, args.threads,
                args.runs_dir / f"{algo}_s{seed}") for seed in args.seeds for algo in ALGOS]
    print(f"{len(jobs)} runs of {args.total_steps:,} env steps, {args.workers} at a time, "
          f"{args.threads} thread(s) each; load average {os.getloadavg()[0]:.2f}; runs in {args.runs_dir}")
    if not args.report_only:
        load_before, t0 = os.getloadavg()[0], time.time()
        run_all(jobs, args.workers)
        args.runs_dir.mkdir(parents=True, exist_ok=True)
        (args.runs_dir / "conditions.json").write_text(json.dumps(
            {"load_average_before": load_before, "load_average_after": os.getloadavg()[0],
             "load_average_15min_after": os.getloadavg()[2], "experiment_wall_s": time.time() - t0}) + "\n")
    runs = load_runs(jobs)
    missing = [j.label for j in jobs if not (j.run_dir / "final.json").is_file()]
    if missing:
        raise SystemExit(f"runs not finished: {missing}; run without --report-only to train them")
    write_report(runs, args, args.report, args.figures)
    from fastmarl.train.marl_eval import merge_runs

    merged = merge_runs(args.runs_dir)  # every run's evaluations in marl-eval's layout, in one file
    print(f"wrote {args.report} and its figures in {args.figures}; summary in {args.runs_dir / 'summary.json'}"
          + (f"; marl-eval results in {merged}" if merged else ""))


if __name__ == "__main__":
    sys.exit(main())
