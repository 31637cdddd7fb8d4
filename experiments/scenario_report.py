"""One page per application scenario: train, evaluate, render, time, and write docs/scenarios/<env_id>.md.

    python experiments/scenario_report.py --scenario relay_v0                  # 3 seeds at the table's budget
    python experiments/scenario_report.py --scenario relay_v0 --seeds 0 1 2 --steps 2e5
    python experiments/scenario_report.py --scenario relay_v0 --report-only    # no training: finished runs only
    python experiments/scenario_report.py --index                               # only docs/scenarios/README.md

What one command does, for the scenario's entry in :data:`SCENARIOS` (default
algorithm, budget, env kwargs, PPO overrides):

1. trains the default algorithm once per seed through ``fastmarl.train`` into
   ``runs/scenarios/<env_id>/seed<k>`` (1 torch thread, one run at a time); a run
   that finished (its ``finished.json``) with the same settings is reused, one
   trained with other settings is an error unless ``--retrain``;
2. plots the learning curve (training episodes' return per agent, per group;
   mean over seeds and a 95% t-interval band) to
   ``docs/scenarios/figures/<env_id>_curve.png``;
3. evaluates, on the same evaluation seeds, uniform random actions, the
   scenario module's ``baseline_policy(spec)`` and the trained policies. With
   n seeds there are n replicates: replicate j plays ``--episodes`` episodes
   from eval seed ``EVAL_SEED + j``; the trained policy of replicate j is seed
   j's. Confidence intervals are 95% t-intervals over the replicates; the
   trained-vs-baseline difference is paired (same episodes). Two-group
   (competitive) envs: every group trains at once (the runner trains all
   groups); each trained group also plays against the other groups' baseline,
   through :class:`fastmarl.envs.api.JointPolicy` (group -> policy);
4. renders GIFs of random and trained behaviour (downscaled, every other frame)
   to ``docs/scenarios/figures/<env_id>_{random,trained}.gif``;
5. times env-steps/s with random actions at 1, 64 and 8192 envs on 1 thread
   (``fastmarl.bench.measure``);
6. writes ``docs/scenarios/<env_id>.md`` (module docstring = the spec, spaces,
   figures, results, throughput, the command) with a "what the data shows"
   paragraph generated from the measured numbers, the numbers to
   ``runs/scenarios/<env_id>/report.json``, and the index
   ``docs/scenarios/README.md``.

Other helpers add scenarios by adding a :class:`ScenarioRun` entry to
:data:`SCENARIOS`; the scenario module must define ``BASELINE`` (one line) and
``baseline_policy(spec)`` (it may take env kwargs as keyword arguments too,
e.g. ``baseline_policy(spec, num_obstacles=2)``: the entry's env kwargs that it
names are passed).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import inspect
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
EVAL_SEED = 20_000  # evaluation envs: replicate j starts from seed EVAL_SEED + j (never a training seed)
BENCH_SIZES = (1, 64, 8192)
CI_LEVEL = 0.95


@dataclass(frozen=True)
class ScenarioRun:
    """How a scenario's page is produced: the default algorithm and its budget."""

    algo: str = "mappo"
    """default algorithm: mappo or ippo"""
    total_steps: int = 1_000_000
    """env steps per seed (pick so one seed trains in ~1-3 min on 1 CPU thread)"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """env keyword arguments of the runs, the evaluation and the timings"""
    ppo: dict[str, Any] = field(default_factory=dict)
    """PPOConfig overrides, e.g. {"lr": 1e-3}"""
    num_envs: int = 200
    """parallel training envs"""
    eval_episodes: int = 200
    """evaluation episodes per replicate"""
    notes: str = ""
    """one or two sentences shown on the page (why these settings)"""

    def __post_init__(self):
        from fastmarl.config import PPOConfig
        from fastmarl.envs.api import check_known_keys

        if self.algo not in ("mappo", "ippo"):
            raise ValueError(f"ScenarioRun.algo must be 'mappo' or 'ippo', got {self.algo!r}")
        for name in ("total_steps", "num_envs", "eval_episodes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ScenarioRun.{name} must be a positive int, got {v!r}")
        check_known_keys(self.ppo, [f.name for f in dataclasses.fields(PPOConfig)], "PPOConfig key in ScenarioRun.ppo")

    def train_config(self, env_id: str, seed: int, runs_dir: Path, total_steps: int | None = None):
        from fastmarl.config import PPOConfig, TrainConfig

        return TrainConfig(algo=self.algo, env=env_id, env_kwargs=dict(self.env_kwargs),
                           total_steps=total_steps or self.total_steps, num_envs=self.num_envs, seed=seed,
                           name=f"seed{seed}", runs_dir=str(runs_dir / env_id), eval_interval=0, eval_episodes=32,
                           checkpoint_interval=0, keep_checkpoints=1, gif=False, tensorboard=False, progress=False,
                           threads=1, ppo=PPOConfig(**self.ppo))


# The table other helpers add to: env id -> how its page is produced.
SCENARIOS: dict[str, ScenarioRun] = {
    "jammer_v0": ScenarioRun(total_steps=400_000, num_envs=64,
                             notes="Default env settings: 2 links vs 2 jammers, 8 channels (+ barrage), 3 power "
                                   "levels, Shannon rate, 50 steps; both sides train at once. 64 envs: more PPO "
                                   "updates per env step, which this budget needs."),
    "swarm_defense_v0": ScenarioRun(total_steps=400_000,
                                    notes="Default env settings: 8 attackers (max speed 0.6) vs 3 defenders (1.0, "
                                          "engagement radius 0.1, 1 engagement per step), shaping 0.1, 50 steps; "
                                          "both sides train at once."),
    "influence_v0": ScenarioRun(total_steps=500_000,
                                notes="Default env settings: 2 agents per side, 16-node geometric graph (mean degree "
                                      "4), all nodes in view, push strength 0.2, 30 steps; both sides train at once."),
    "market_v0": ScenarioRun(total_steps=600_000,
                             notes="Default env settings: 2 learning makers, 4 scripted trader slots (arrival 0.5), "
                                   "volatility 0.5, inventory penalty 0.05, 50 steps."),
    "relay_v0": ScenarioRun(total_steps=2_000_000, ppo=dict(gamma=0.95),
                            notes="Default env settings (4 relays, comm range 0.5, remote moving at 0.3, shaping 1). "
                                  "gamma 0.95: with the default 0.99 MAPPO learned in 1 of 3 seeds (the others "
                                  "collapsed below random); a 20-step horizon suits the 50-step episodes and their "
                                  "dense per-step team reward."),
    "formation_v0": ScenarioRun(total_steps=1_000_000, notes="Default env settings (4 agents, random shape, "
                                                             "2 obstacles)."),
    "traffic_grid_v0": ScenarioRun(total_steps=1_000_000, notes="Default env settings (2x2 grid, arrival rate 0.3)."),
    "pursuit_evasion_v0": ScenarioRun(total_steps=1_500_000,
                                      notes="Default env settings: 3 learning pursuers vs 1 learning evader, "
                                            "2 obstacles; both sides train at once."),
    "swarm_coverage_v0": ScenarioRun(total_steps=500_000,
                                     notes="Default env settings: 4 drones, 16x16 grid, sensing radius 0.15, "
                                           "4 targets, 1 station of capacity 1, 100 steps."),
    "waterworld_v0": ScenarioRun(total_steps=1_000_000,
                                 notes="PettingZoo's default settings (2 pursuers, 5 food, 10 poison, n_coop 1, "
                                       "30 sensors, 500 steps), continuous thrust; at 500k steps the return "
                                       "was still rising."),
}


def scenario_module(env_id: str, env_kwargs: dict[str, Any]):
    """The Python module that defines the scenario (its docstring is the spec)."""
    import fastmarl

    env = fastmarl.make(env_id, num_envs=1, seed=0, **env_kwargs)
    for obj in (getattr(env, "scenario", None), env):
        if obj is None:
            continue
        mod = sys.modules.get(type(obj).__module__)
        if mod is not None and hasattr(mod, "baseline_policy"):
            return mod
    raise ValueError(f"{env_id}: no module with baseline_policy found (looked at "
                     f"{type(getattr(env, 'scenario', env)).__module__}); the scenario contract asks for BASELINE and "
                     "baseline_policy(spec) in the scenario's module")


def make_baseline(module, spec, env_kwargs: dict[str, Any]):
    """``module.baseline_policy(spec)``, passing the env kwargs it names as keyword arguments."""
    fn = module.baseline_policy
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return fn(spec, **env_kwargs)
    return fn(spec, **{k: v for k, v in env_kwargs.items() if k in params})


# -- training ------------------------------------------------------------------------

def _comparable(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in ("name", "runs_dir", "progress", "threads")}


def train_seed(env_id: str, entry: ScenarioRun, seed: int, runs_dir: Path, total_steps: int | None = None,
               retrain: bool = False, log: Callable[[str], None] = print) -> Path:
    """Train one seed (or reuse its finished run); returns the run directory."""
    import fastmarl

    cfg = entry.train_config(env_id, seed, runs_dir, total_steps)
    run_dir = runs_dir / env_id / cfg.name
    finished = run_dir / "finished.json"
    if run_dir.exists():
        saved = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else None
        same = saved is not None and _comparable(saved) == _comparable(json.loads(json.dumps(cfg.to_dict())))
        if finished.is_file() and same and not retrain:
            log(f"{env_id} seed {seed}: reusing the finished run {run_dir}")
            return run_dir
        if finished.is_file() and not same and not retrain:
            diff = sorted(k for k in _comparable(cfg.to_dict()) if saved.get(k) != json.loads(
                json.dumps(cfg.to_dict()))[k])
            raise SystemExit(f"{run_dir} was trained with other settings ({', '.join(diff)} differ); pass --retrain "
                             "to train it again")
        shutil.rmtree(run_dir)  # unfinished, or --retrain
    log(f"{env_id} seed {seed}: training {cfg.algo} for {cfg.total_steps:,} env steps into {run_dir}")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = fastmarl.train(cfg)
    info = {"env_steps": res.global_step, "wall_s": time.perf_counter() - t0, "finished": time.strftime("%FT%T")}
    finished.write_text(json.dumps(info, indent=2) + "\n")
    return run_dir


# -- reading runs and statistics ------------------------------------------------------

def read_curve(run_dir: Path, groups: list[str]) -> dict[str, np.ndarray]:
    """metrics.csv -> {"step", "time", group...} arrays over the iterations that completed episodes.
    A single-group env's group column is the ``return`` column."""
    with open(run_dir / "metrics.csv", newline="") as f:
        # rows with completed episodes (a competitive env's rows have per-group returns only)
        key = "return" if len(groups) == 1 else f"return/{groups[0]}"
        rows = [r for r in csv.DictReader(f) if r.get(key)]
    out = {k: np.array([float(r[k]) for r in rows]) for k in ("step", "time")}
    for g in groups:
        key = "return" if len(groups) == 1 else f"return/{g}"
        out[g] = np.array([float(r[key]) for r in rows])
    return out


def t_interval(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of ``values`` (1-D); (m, m, m) for one value."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def curve_bands(curves: list[dict[str, np.ndarray]], groups: list[str], points: int = 100) -> dict:
    """Runs' curves on a common grid of env steps (up to the shortest run): mean and t-band per group."""
    end = min(c["step"][-1] for c in curves)
    start = max(c["step"][0] for c in curves)
    grid = np.linspace(start, end, points)
    out = {"step": grid}
    for g in groups:
        vals = np.stack([np.interp(grid, c["step"], c[g]) for c in curves])  # (runs, points)
        stats = [t_interval(vals[:, i]) for i in range(points)]
        out[g] = tuple(np.array(x) for x in zip(*stats))  # (mean, low, high)
    return out


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    c = np.cumsum(np.insert(y, 0, 0.0))
    i = np.arange(1, len(y) + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


# -- evaluation ------------------------------------------------------------------------

def evaluate_setups(env_id: str, entry: ScenarioRun, run_dirs: list[Path], episodes: int,
                    eval_seed: int = EVAL_SEED) -> dict[str, dict[str, list[float]]]:
    """setup name -> group -> one return per replicate (see the module docstring)."""
    import fastmarl
    from fastmarl.envs.api import JointPolicy
    from fastmarl.envs.episodes import evaluate_policy
    from fastmarl.envs.scripted import RandomPolicy
    from fastmarl.train.runner import load_run

    env = fastmarl.make(env_id, num_envs=episodes, seed=eval_seed, **entry.env_kwargs)
    spec = env.spec
    groups = list(spec.groups)
    module = scenario_module(env_id, entry.env_kwargs)
    baseline, rand = make_baseline(module, spec, entry.env_kwargs), RandomPolicy(spec)
    trained = [load_run(d, num_envs=1)[0] for d in run_dirs]
    setups: dict[str, Callable[[int], tuple[Any, bool]]] = {
        "random": lambda j: (rand, False),
        "baseline": lambda j: (baseline, True),
    }
    if len(groups) == 1:
        setups["trained"] = lambda j: (trained[j], True)
        setups["trained (stochastic)"] = lambda j: (trained[j], False)
    else:
        setups["trained vs trained"] = lambda j: (trained[j], True)
        for g in groups:
            setups[f"trained {g} vs baseline"] = lambda j, g=g: (
                JointPolicy({h: trained[j] if h == g else baseline for h in groups}), True)
            setups[f"random {g} vs baseline"] = lambda j, g=g: (
                JointPolicy({h: rand if h == g else baseline for h in groups}), True)
    out: dict[str, dict[str, list[float]]] = {name: {g: [] for g in groups} for name in setups}
    for j in range(len(run_dirs)):
        for name, make in setups.items():
            policy, det = make(j)
            res = evaluate_policy(policy, env, deterministic=det, seed=eval_seed + j)
            for g in groups:
                out[name][g].append(res["return"] if len(groups) == 1 else res[f"return/{g}"])
    return out


def comparisons(results: dict[str, dict[str, list[float]]], groups: list[str]) -> list[dict]:
    """Paired differences that the text reports: per group, trained vs baseline and vs random
    (against the same opponents in two-group envs)."""
    rows = []
    for g in groups:
        if len(groups) == 1:
            trained, base, rand = results["trained"][g], results["baseline"][g], results["random"][g]
            label = "trained"
        else:
            trained = results[f"trained {g} vs baseline"][g]
            base, rand = results["baseline"][g], results[f"random {g} vs baseline"][g]
            label = f"trained {g}"
        for other, ref in (("baseline", base), ("random", rand)):
            d = np.asarray(trained) - np.asarray(ref)
            m, lo, hi = t_interval(d)
            rows.append({"group": g, "policy": label, "versus": other, "diff": m, "low": lo, "high": hi,
                         "wins": int((d > 0).sum()), "n": int(d.size), "trained": float(np.mean(trained)),
                         "reference": float(np.mean(ref))})
    return rows


def verdict(c: dict) -> str:
    """One sentence from a paired comparison (see :func:`comparisons`)."""
    ci = f"95% CI [{c['low']:+.2f}, {c['high']:+.2f}], {c['wins']}/{c['n']} seeds better"
    if c["low"] > 0:
        return f"beats the {c['versus']} by {c['diff']:+.2f} per agent ({ci})"
    if c["high"] < 0:
        return f"does not beat the {c['versus']}: it scores {-c['diff']:.2f} per agent less ({ci})"
    if c["wins"] in (0, c["n"]) and c["n"] > 1:
        side = "above" if c["wins"] else "below"
        return (f"is {side} the {c['versus']} in all {c['n']} seeds (difference {c['diff']:+.2f} per agent), but the "
                f"seeds vary too much for the 95% CI [{c['low']:+.2f}, {c['high']:+.2f}] to exclude a tie")
    return (f"is not distinguishable from the {c['versus']} (difference {c['diff']:+.2f} per agent, {ci})")


def curve_trend(curves: list[dict[str, np.ndarray]], group: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per seed, the mean training return over the last 10% of the logged iterations and over
    the 10% before: two arrays (seeds,); None when a run logged fewer than 4 points."""
    last, prev = [], []
    for c in curves:
        y = c[group]
        if len(y) < 4:
            return None
        k = max(1, len(y) // 10)
        last.append(y[-k:].mean())
        prev.append(y[-2 * k:-k].mean())
    return np.array(last), np.array(prev)


def data_shows(algo: str, groups: list[str], comps: list[dict], curves: list[dict[str, np.ndarray]],
               results: dict[str, dict[str, list[float]]]) -> str:
    """The "what the data shows" paragraph, built only from the measured numbers."""
    name = algo.upper()
    out = []
    for g in groups:
        cs = {c["versus"]: c for c in comps if c["group"] == g}
        b, r = cs["baseline"], cs["random"]
        others = " and ".join(f"{h}s" for h in groups if h != g)
        who = f"Trained {name}" if len(groups) == 1 else f"Trained {name} {g}s (against the baseline {others})"
        verb = "scores" if len(groups) == 1 else "score"
        out.append(f"{who} {verb} {b['trained']:.2f} per agent, the baseline {b['reference']:.2f}, random "
                   f"{r['reference']:.2f}: the trained policy {verdict(b)}, and {verdict(r)}.")
        trend_means = curve_trend(curves, g)
        if trend_means is None:
            continue
        last, prev = trend_means
        _, lo, hi = t_interval(last - prev)
        if lo > 0:
            trend = "was still rising at the end of training"
        elif hi < 0:
            trend = "was falling at the end of training"
        else:
            trend = "shows no clear trend at the end of training"
        last, prev = float(last.mean()), float(prev.mean())
        label = "" if len(groups) == 1 else f" of the {g}s"
        out.append(f"The training return{label} {trend} (mean {last:.2f} over the last 10% of the iterations vs "
                   f"{prev:.2f} over the 10% before).")
    if len(groups) > 1:
        tt = ", ".join(f"{g} {np.mean(results['trained vs trained'][g]):.2f}" for g in groups)
        bb = ", ".join(f"{g} {np.mean(results['baseline'][g]):.2f}" for g in groups)
        out.append(f"Trained against trained (each seed's groups together): {tt}; baseline against baseline: {bb}.")
    return " ".join(out)


# -- figures ------------------------------------------------------------------------

def plot_curve(bands: dict, groups: list[str], results: dict, title: str, path: Path,
               curves: list[dict[str, np.ndarray]] = ()) -> Path:
    """Mean and band per group (one panel each), every seed's curve as a thin line, and the
    evaluation returns of the baseline and of random actions as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups) + 0.8, 3.2), squeeze=False)
    x = bands["step"]
    for ax, g in zip(axes[0], groups):
        mean, low, high = bands[g]
        for k, c in enumerate(curves):
            ax.plot(c["step"], c[g], color="tab:blue", lw=0.6, alpha=0.45, label="single seeds" if k == 0 else None)
        ax.plot(x, mean, color="tab:blue", label="trained (training episodes)")
        ax.fill_between(x, low, high, color="tab:blue", alpha=0.25, linewidth=0)
        base = "baseline" if len(groups) == 1 else "baseline"
        rand = "random" if len(groups) == 1 else f"random {g} vs baseline"
        ax.axhline(np.mean(results[base][g]), color="tab:green", ls="--", label="baseline (eval)")
        ax.axhline(np.mean(results[rand][g]), color="tab:red", ls=":", label="random (eval)")
        ax.set_xlabel("env steps")
        ax.set_ylabel("return per agent" if len(groups) == 1 else f"return per {g}")
        ax.grid(alpha=0.3)
        if len(groups) > 1:
            ax.set_title(g, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def record_gif(policy, env, path: Path, deterministic: bool, seed: int, width: int = 240,
               max_bytes: int = 600_000) -> Path:
    """``record_episode`` to a temporary GIF, then every other frame, resized to ``width`` px wide
    (smaller if needed to stay under ``max_bytes``)."""
    import imageio.v3 as iio
    from PIL import Image

    from fastmarl.envs.episodes import record_episode

    with tempfile.TemporaryDirectory() as tmp:
        raw = record_episode(policy, env, Path(tmp) / "raw.gif", deterministic=deterministic, seed=seed)
        frames = np.asarray(iio.imread(raw, index=None))[..., :3][::2]
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        h = max(1, round(frames.shape[1] * width / frames.shape[2]))
        resample = Image.NEAREST if width > frames.shape[2] else Image.LANCZOS  # keep small renders crisp
        small = np.stack([np.asarray(Image.fromarray(f).resize((width, h), resample)) for f in frames])
        iio.imwrite(path, small, extension=".gif", duration=200, loop=0)
        if path.stat().st_size <= max_bytes or width <= 80:
            return path
        width = int(width * 0.8)


def render_gifs(env_id: str, entry: ScenarioRun, run_dir: Path, figures: Path, seed: int = EVAL_SEED) -> dict:
    import fastmarl
    from fastmarl.envs.scripted import RandomPolicy
    from fastmarl.train.runner import load_run

    trained, _, env, _ = load_run(run_dir, num_envs=1, render=True)
    out = {"trained": record_gif(trained, env, figures / f"{env_id}_trained.gif", True, seed)}
    env = fastmarl.make(env_id, num_envs=1, seed=seed, **entry.env_kwargs)
    out["random"] = record_gif(RandomPolicy(env.spec), env, figures / f"{env_id}_random.gif", False, seed)
    return out


# -- throughput ------------------------------------------------------------------------

def throughput(env_id: str, env_kwargs: dict[str, Any], sizes=BENCH_SIZES, seconds: float = 1.5) -> list[dict]:
    """Env-steps/s under uniform random actions (drawn inside the timed loop, as ``fastmarl bench envs``
    does), eager, 1 thread, after 50 warm-up steps; at least one 25-step block per size."""
    import fastmarl
    from fastmarl.envs.scripted import RandomPolicy

    torch.set_num_threads(1)
    out = []
    for n in sizes:
        env = fastmarl.make(env_id, num_envs=n, seed=0, **env_kwargs)
        ts = env.reset(seed=0)
        policy, gen = RandomPolicy(env.spec), torch.Generator().manual_seed(0)
        for _ in range(50):
            ts = env.step(policy.act(ts, {}, False, gen)[0])
        steps, t0 = 0, time.perf_counter()
        while True:
            for _ in range(25):
                ts = env.step(policy.act(ts, {}, False, gen)[0])
            steps += 25
            if time.perf_counter() - t0 >= seconds:
                break
        dt = time.perf_counter() - t0
        out.append({"num_envs": n, "steps": steps, "seconds": dt, "steps_per_s": n * steps / dt})
    return out


def machine() -> str:
    import fastmarl

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores (1 thread used), Python {platform.python_version()}, "
            f"torch {torch.__version__}, fastmarl {fastmarl.__version__}, load average {os.getloadavg()[0]:.2f}")


# -- pages ------------------------------------------------------------------------

def _fmt_ci(values: list[float]) -> str:
    m, lo, hi = t_interval(np.asarray(values))
    return f"{m:.2f} [{lo:.2f}, {hi:.2f}]"


def _space(g) -> str:
    return f"Discrete({g.action_dim})" if g.discrete else f"Box({g.action_dim})"


def page_markdown(ctx: dict) -> str:
    """The page, from the numbers in ``ctx`` (what ``report.json`` holds) and a few strings."""
    env_id, groups = ctx["env_id"], ctx["groups"]
    L = [f"# {env_id}", "", f"<!-- headline: {ctx['headline']} -->", "", ctx["description"][:1].upper() + ctx["description"][1:] + ".", "",
         f"**Baseline:** {ctx['baseline']}", ""]
    if len(groups) > 1:
        L += ["This is a competitive (two-sided) scenario: self-play training and ratings over training are in "
              "[docs/competitive.md](../competitive.md).", ""]
    L += ["## The scenario (module docstring)", "", ctx["docstring"].strip(), "",
          "## Spaces (default settings of this page)", "",
          "| group | agents | obs dim | actions |", "|---|---:|---:|---|"]
    L += [f"| {g['name']} | {g['agents']} | {g['obs_dim']} | {g['actions']} |" for g in ctx["spaces"]]
    L += ["", f"Global state: {ctx['state_dim']} floats; episodes last at most {ctx['max_episode_steps']} steps. "
          f"Env kwargs: `{json.dumps(ctx['env_kwargs'])}`.", "",
          "## Behaviour", "", "| random | trained |", "|---|---|",
          f"| ![random](figures/{env_id}_random.gif) | ![trained](figures/{env_id}_trained.gif) |", "",
          f"One episode from eval seed {EVAL_SEED}, every other step; trained = seed {ctx['seeds'][0]}'s "
          f"{ctx['algo'].upper()} policy, deterministic" + (" (all groups trained)." if len(groups) > 1 else "."),
          "", "## Learning curve", "", f"![learning curve](figures/{env_id}_curve.png)", "",
          f"{ctx['algo'].upper()}, {len(ctx['seeds'])} seeds ({', '.join(map(str, ctx['seeds']))}): return per agent "
          "of the training episodes (stochastic policy), mean over seeds with a 95% t-interval band, thin lines: "
          "single seeds; dashed lines: evaluation return of the baseline and of random actions"
          + (" (for a group: its baseline or random actions against the other groups' baseline; the training "
             "curve is against the co-training groups)." if len(groups) > 1 else "."), "",
          "## Results", "",
          f"Return per agent (summed reward over an episode, mean over the group's agents), mean over "
          f"{len(ctx['seeds'])} replicates with a 95% t-interval; each replicate is {ctx['episodes']} evaluation "
          f"episodes from eval seed {EVAL_SEED} + j, the same episodes for every policy; the trained policy of "
          "replicate j is training seed j's (deterministic unless marked stochastic).", "",
          "| policy | " + " | ".join(groups) + " |", "|---|" + "---:|" * len(groups)]
    for name, per_group in ctx["results"].items():
        L.append(f"| {name} | " + " | ".join(_fmt_ci(per_group[g]) for g in groups) + " |")
    L += ["", "| seed | env steps | train time (s) | final training return | eval return (deterministic) |",
          "|---:|---:|---:|---:|---:|"]
    for s in ctx["per_seed"]:
        L.append(f"| {s['seed']} | {s['env_steps']:,} | {s['train_time_s']:.0f} | "
                 + " / ".join(f"{v:.2f}" for v in s["final_train_return"]) + " | "
                 + " / ".join(f"{v:.2f}" for v in s["eval_return"]) + " |")
    if len(groups) > 1:
        L += ["", "Per-seed returns are listed per group: " + " / ".join(groups) + "."]
    L += ["", "### What the data shows", "", ctx["data_shows"], ""]
    for title, text in ctx.get("extra_sections", []):
        L += [f"## {title}", "", text, ""]
    L += ["## Throughput", "", "Env-steps/s (one step of one env, all agents acting) with uniform random actions, "
          f"eager PyTorch on 1 CPU thread, ~{ctx['bench_seconds']:g} s per size after 50 warm-up steps (as "
          "`fastmarl bench envs` measures). "
          "Timed on a shared machine while other jobs ran: treat them as rough.", "",
          "| num_envs | env-steps/s |", "|---:|---:|"]
    L += [f"| {r['num_envs']:,} | {r['steps_per_s']:,.0f} |" for r in ctx["throughput"]]
    L += ["", f"Machine: {ctx['machine']}.", "", "## Reproduce", "", "```bash", ctx["command"], "```", "",
          f"Training settings: `{ctx['algo']}`, {ctx['total_steps']:,} env steps per seed, {ctx['num_envs']} envs, "
          f"PPO overrides `{json.dumps(ctx['ppo'])}`, 1 torch thread; runs in `runs/scenarios/{env_id}/seed<k>`. "
          + ctx["notes"], ""]
    return "\n".join(L)


def headline(algo: str, groups: list[str], comps: list[dict]) -> str:
    parts = []
    for g in groups:
        c = next(c for c in comps if c["group"] == g and c["versus"] == "baseline")
        who = algo.upper() if len(groups) == 1 else f"{algo.upper()} {g}"
        if c["low"] > 0 or c["high"] < 0:
            state = "beats it" if c["low"] > 0 else "worse"
        elif c["wins"] in (0, c["n"]):
            state = f"{'above' if c['wins'] else 'below'} it in every seed, CI includes a tie"
        else:
            state = "no clear difference"
        parts.append(f"{who} {c['trained']:.2f} vs baseline {c['reference']:.2f} ({state})")
    return "; ".join(parts)


def write_index(docs: Path) -> Path:
    """docs/scenarios/README.md: every registered application scenario, with its page if there is one."""
    from fastmarl.envs.registry import list_envs

    L = ["# Application scenarios", "",
         "One page per scenario: what it models, its spaces, random vs trained behaviour, learning curves over "
         "seeds, the baseline it is compared with, and env-steps/s. Every page is generated by "
         "`python experiments/scenario_report.py --scenario <env_id>` from measured numbers.", "",
         "| scenario | what it models | result (eval return per agent) |", "|---|---|---|"]
    for e in list_envs():
        if e.family != "applications":
            continue
        page = docs / f"{e.env_id}.md"
        if page.is_file():
            head = next((ln[len("<!-- headline: "):-len(" -->")] for ln in page.read_text().splitlines()
                         if ln.startswith("<!-- headline: ")), "")
            L.append(f"| [{e.env_id}]({e.env_id}.md) | {e.description} | {head} |")
        else:
            L.append(f"| {e.env_id} | {e.description} | no page yet |")
    L.append("")
    path = docs / "README.md"
    path.write_text("\n".join(L))
    return path


# -- extra sections ----------------------------------------------------------------------

def heading_geometry(pursuer_pos: Tensor, pursuer_vel: Tensor, evader_pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """pursuer_pos / pursuer_vel (E, P, 2), evader_pos (E, V, 2) -> (distance to the nearest evader,
    angle in degrees between the velocity and the line to that evader, speed), each (E, P)."""
    rel = evader_pos[:, None] - pursuer_pos[:, :, None]  # (E, P, V, 2)
    d = rel.norm(dim=-1)
    j = d.argmin(-1, keepdim=True)
    to_ev = torch.gather(rel, 2, j[..., None].expand(-1, -1, -1, 2))[:, :, 0]  # (E, P, 2)
    dmin = d.gather(2, j)[..., 0]
    speed = pursuer_vel.norm(dim=-1)
    cos = (pursuer_vel * to_ev).sum(-1) / (speed * dmin).clamp_min(1e-12)
    return dmin, torch.rad2deg(torch.arccos(cos.clamp(-1, 1))), speed


@torch.no_grad()
def pursuer_geometry(policy, env, seed: int, min_speed: float = 0.1) -> dict[str, np.ndarray]:
    """Roll ``env`` (a pursuit_evasion_v0 env, all its envs for one episode) under ``policy`` and measure,
    per pursuer index: mean distance to the nearest evader, mean angle (degrees, 0..180) between its
    velocity and the straight line to that evader (steps where it moves faster than ``min_speed``),
    and the share of those steps within 20 degrees (heading straight at the evader: a chaser). Also
    the mean angle by distance rank (0 = the pursuer nearest to its evader at that step)."""
    P = env.spec.groups["pursuer"].num_agents
    V = env.scenario.V
    T = env.spec.max_episode_steps
    gen = torch.Generator().manual_seed(seed)
    ts = env.reset(seed=seed)
    carry = policy.initial_carry(env.num_envs)
    dist_sum = torch.zeros(P, dtype=torch.float64)
    ang_sum, straight, moving = (torch.zeros(P, dtype=torch.float64) for _ in range(3))
    rank_ang, rank_n = torch.zeros(P, dtype=torch.float64), torch.zeros(P, dtype=torch.float64)
    steps = 0
    for _ in range(T - 1):  # the state after the last step is already the next episode's start
        actions, carry = policy.act(ts, carry, True, gen)
        ts = env.step(actions)
        s = env.world_state
        dmin, ang, speed = heading_geometry(s.pos[:, :P].double(), s.vel[:, :P].double(), s.pos[:, P:P + V].double())
        m = (speed > min_speed).double()
        dist_sum += dmin.sum(0)
        ang_sum += (ang * m).sum(0)
        straight += ((ang < 20).double() * m).sum(0)
        moving += m.sum(0)
        rank = dmin.argsort(-1).argsort(-1)  # (E, P): 0 = nearest
        rank_ang.index_add_(0, rank.flatten(), (ang * m).flatten())
        rank_n.index_add_(0, rank.flatten(), m.flatten())
        steps += env.num_envs
    return {"distance": (dist_sum / steps).numpy(), "angle": (ang_sum / moving.clamp_min(1)).numpy(),
            "straight_share": (straight / moving.clamp_min(1)).numpy(),
            "angle_by_rank": (rank_ang / rank_n.clamp_min(1)).numpy()}


def pursuit_roles(env_id: str, entry: ScenarioRun, run_dirs: list[Path], episodes: int) -> tuple[str, str]:
    """Issue #6 asks whether pursuer roles specialise (chasers vs cutters): the measures of
    :func:`pursuer_geometry` for the trained pursuers (against the baseline evaders) and, as a control,
    for the scripted pursuers, which are identical by construction (their differences are noise)."""
    import fastmarl
    from fastmarl.envs.api import JointPolicy
    from fastmarl.train.runner import load_run

    env = fastmarl.make(env_id, num_envs=episodes, seed=EVAL_SEED, **entry.env_kwargs)
    groups = list(env.spec.groups)
    baseline = make_baseline(scenario_module(env_id, entry.env_kwargs), env.spec, entry.env_kwargs)

    def with_pursuers(p):
        return JointPolicy({g: p if g == "pursuer" else baseline for g in groups})

    control = pursuer_geometry(with_pursuers(baseline), env, EVAL_SEED)
    trained = [pursuer_geometry(with_pursuers(load_run(d, num_envs=1)[0]), env, EVAL_SEED + j)
               for j, d in enumerate(run_dirs)]
    P = len(control["angle"])
    L = ["Per pursuer, from deterministic evaluation rollouts of the trained pursuers against the baseline "
         f"evaders ({episodes} episodes per seed): mean distance to the nearest evader, mean angle between the "
         "pursuer's heading and the straight line to that evader (moving steps only; a *chaser* heads straight "
         "at the evader, near 0 degrees, a *cutter* heads to where it will be, further off the line), and the "
         "share of moving steps within 20 degrees of that line. The scripted pursuers all run the same rule, "
         "so their differences measure noise.", "",
         "| policy | pursuer | distance | heading angle (deg) | share within 20 deg |", "|---|---:|---:|---:|---:|"]
    for label, geo in [("scripted", control)] + [(f"seed {j}", g) for j, g in enumerate(trained)]:
        for i in range(P):
            L.append(f"| {label} | {i} | {geo['distance'][i]:.3f} | {geo['angle'][i]:.1f} | "
                     f"{geo['straight_share'][i]:.2f} |")
    spread = np.array([np.ptp(g["angle"]) for g in trained])
    ctrl_spread = float(np.ptp(control["angle"]))
    by_rank = np.mean([g["angle_by_rank"] for g in trained], axis=0)
    L += ["", f"Spread of the mean heading angle across pursuer indices: scripted {ctrl_spread:.1f} deg; trained "
          + ", ".join(f"seed {j} {v:.1f} deg" for j, v in enumerate(spread)) + ". "
          "By distance rank at each step (nearest first), trained pursuers head at "
          + ", ".join(f"{a:.1f}" for a in by_rank) + " deg on average over seeds (scripted: "
          + ", ".join(f"{a:.1f}" for a in control["angle_by_rank"]) + " deg)."]
    threshold = max(10.0, 2 * ctrl_spread)
    specialised = [j for j, v in enumerate(spread) if v > threshold]
    if specialised:
        parts = []
        for j in specialised:
            a = trained[j]["angle"]
            parts.append(f"seed {j}: pursuer {int(a.argmin())} chases ({a.min():.0f} deg) while pursuer "
                         f"{int(a.argmax())} heads {a.max():.0f} deg off the line")
        verdict_text = (f"Index roles differ by more than {threshold:.0f} deg (twice the scripted spread, at least "
                        f"10) in {len(specialised)} of {len(trained)} seeds: " + "; ".join(parts) + ".")
    else:
        verdict_text = (f"No seed's pursuers differ by more than {threshold:.0f} deg (twice the scripted spread, at "
                        "least 10) in mean heading angle: at this budget the data show no fixed chaser/cutter "
                        "roles by agent index.")
    rank_gap = float(by_rank[-1] - by_rank[0])
    ctrl_gap = float(control["angle_by_rank"][-1] - control["angle_by_rank"][0])
    verdict_text += (f" Roles by position: the pursuer furthest from the evader heads {rank_gap:+.1f} deg more off "
                     f"the straight line than the nearest one (scripted: {ctrl_gap:+.1f} deg, from patrolling "
                     "while the evader is out of sight)")
    if rank_gap > ctrl_gap + 10:
        verdict_text += ", a larger gap than the scripted rule's: far pursuers cut off more than they follow."
    elif rank_gap < ctrl_gap - 10:
        verdict_text += ", a smaller gap than the scripted rule's."
    else:
        verdict_text += ", within 10 deg of the scripted rule's."
    L += ["", verdict_text]
    return "Do pursuer roles specialise (chasers vs cutters)?", "\n".join(L)


EXTRA_SECTIONS: dict[str, Callable[..., tuple[str, str]]] = {"pursuit_evasion_v0": pursuit_roles}


# -- the whole pipeline ------------------------------------------------------------------

def run_scenario(env_id: str, seeds: list[int], runs_dir: Path, docs: Path, total_steps: int | None = None,
                 episodes: int | None = None, retrain: bool = False, report_only: bool = False,
                 bench_sizes=BENCH_SIZES, bench_seconds: float = 1.5, command: str | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Everything for one scenario; returns the page's numbers (also saved to report.json)."""
    import fastmarl
    from fastmarl.envs.registry import list_envs

    if env_id not in SCENARIOS:
        raise SystemExit(f"no entry for {env_id!r} in SCENARIOS (experiments/scenario_report.py); known: "
                         f"{sorted(SCENARIOS)}")
    if len(seeds) < 2:
        raise SystemExit("at least 2 seeds are needed for confidence intervals")
    torch.set_num_threads(1)
    entry = SCENARIOS[env_id]
    episodes = episodes or entry.eval_episodes
    run_dirs = []
    for s in seeds:
        if report_only:
            d = runs_dir / env_id / f"seed{s}"
            if not (d / "finished.json").is_file():
                raise SystemExit(f"{d} has not finished; run without --report-only to train it")
            run_dirs.append(d)
        else:
            run_dirs.append(train_seed(env_id, entry, s, runs_dir, total_steps, retrain, log))
    cfg = json.loads((run_dirs[0] / "config.json").read_text())
    env = fastmarl.make(env_id, num_envs=1, seed=0, **entry.env_kwargs)
    spec, groups = env.spec, list(env.spec.groups)
    module = scenario_module(env_id, entry.env_kwargs)
    figures = docs / "figures"

    log(f"{env_id}: reading curves, evaluating {len(seeds)} x {episodes} episodes per policy")
    curves = [read_curve(d, groups) for d in run_dirs]
    results = evaluate_setups(env_id, entry, run_dirs, episodes)
    comps = comparisons(results, groups)
    title = f"{entry.algo.upper()} on {env_id}, {len(seeds)} seeds"
    plot_curve(curve_bands(curves, groups), groups, results, title, figures / f"{env_id}_curve.png", curves)
    log(f"{env_id}: rendering GIFs")
    render_gifs(env_id, entry, run_dirs[0], figures)
    log(f"{env_id}: timing env-steps/s at {list(bench_sizes)} envs")
    bench = throughput(env_id, entry.env_kwargs, bench_sizes, bench_seconds)
    trained_key = "trained" if len(groups) == 1 else "trained vs trained"
    per_seed = []
    for j, (s, d, c) in enumerate(zip(seeds, run_dirs, curves)):
        fin = json.loads((d / "finished.json").read_text())
        per_seed.append({"seed": s, "env_steps": int(fin["env_steps"]), "train_time_s": float(c["time"][-1]),
                         "final_train_return": [float(c[g][-1]) for g in groups],
                         "eval_return": [results[trained_key][g][j] for g in groups]})
    extra = [fn(env_id, entry, run_dirs, episodes) for k, fn in EXTRA_SECTIONS.items() if k == env_id]
    description = next(e.description for e in list_envs() if e.env_id == env_id)
    ctx = {"env_id": env_id, "description": description, "baseline": module.BASELINE,
           "docstring": module.__doc__ or "", "groups": groups, "algo": entry.algo, "seeds": list(seeds),
           "episodes": episodes, "total_steps": int(cfg["total_steps"]), "num_envs": entry.num_envs,
           "env_kwargs": entry.env_kwargs, "ppo": entry.ppo, "notes": entry.notes,
           "spaces": [{"name": g.name, "agents": g.num_agents, "obs_dim": g.obs_dim, "actions": _space(g)}
                      for g in spec.groups.values()],
           "state_dim": spec.state_dim, "max_episode_steps": spec.max_episode_steps, "results": results,
           "comparisons": comps, "per_seed": per_seed, "throughput": [
               {k: r[k] for k in ("num_envs", "steps_per_s", "seconds", "steps")} for r in bench],
           "machine": machine(), "extra_sections": extra, "bench_seconds": bench_seconds,
           "command": command or (f"python experiments/scenario_report.py --scenario {env_id} --seeds "
                                  + " ".join(map(str, seeds))
                                  + (f" --steps {total_steps}" if total_steps else ""))}
    ctx["data_shows"] = data_shows(entry.algo, groups, comps, curves, results)
    ctx["headline"] = headline(entry.algo, groups, comps)
    page = docs / f"{env_id}.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(page_markdown(ctx))
    (runs_dir / env_id / "report.json").write_text(json.dumps(ctx, indent=2, default=str) + "\n")
    write_index(docs)
    log(f"{env_id}: wrote {page}")
    return ctx


def _parse_count(s: str) -> int:
    v = float(s)
    if v != int(v) or v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {s}")
    return int(v)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", help=f"env id, one of {sorted(SCENARIOS)}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=_parse_count, default=None, help="env steps per seed (default: the table's)")
    ap.add_argument("--episodes", type=_parse_count, default=None, help="eval episodes per replicate")
    ap.add_argument("--retrain", action="store_true", help="train again even where a finished run exists")
    ap.add_argument("--report-only", action="store_true", help="no training: use the finished runs")
    ap.add_argument("--index", action="store_true", help="only rewrite docs/scenarios/README.md")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/scenarios"))
    ap.add_argument("--docs", type=Path, default=Path("docs/scenarios"))
    args = ap.parse_args(argv)
    if args.index:
        print(f"wrote {write_index(args.docs)}")
        return
    if not args.scenario:
        ap.error("--scenario is required (or --index)")
    run_scenario(args.scenario, args.seeds, args.runs_dir, args.docs, args.steps, args.episodes, args.retrain,
                 args.report_only)


if __name__ == "__main__":
    main()
