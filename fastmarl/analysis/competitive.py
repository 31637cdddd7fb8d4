"""Competitive runs, after training: the snapshot matrix with Elo ratings, exploitability, and
``train_and_evaluate`` (training, then both), which ``fastmarl selfplay`` runs.

Evaluation matrix and ratings (:func:`evaluate_matrix`): every snapshot of side A plays every
snapshot of side B (plus ``random``, and ``baseline`` where the env has one) for ``episodes``
paired episodes (the same start states in every cell); the cells' scores
(:func:`fastmarl.analysis.elo.matrix_scores`) are fitted by the maximum-likelihood Elo
(:func:`fastmarl.analysis.elo.fit_elo`) with ``episodes`` games per cell. Ratings compare
entries *within* a side; the offset between sides is arbitrary (roles are asymmetric).

Exploitability (:func:`exploitability`): freeze one group's final snapshot, train fresh
learners for the other trained groups against it for ``steps`` env steps (a best response),
and report how much more they earn against it than the self-play run's final snapshots do
(``gap``, per-agent return; > 0 means the frozen policy is exploitable beyond what self-play
found).

Files written into the run: ``matrix.csv``, ``ratings.csv``, ``ratings.png``,
``exploitability.json`` and ``exploitability/`` (the best-response runs).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fastmarl.analysis.elo import fit_elo, matrix_scores
from fastmarl.config import EVAL_SEED_OFFSET, ConfigError
from fastmarl.config.competitive import CompetitiveConfig, GroupSetup
from fastmarl.envs import make
from fastmarl.envs.api import JointPolicy, Policy
from fastmarl.envs.scripted import RandomPolicy
from fastmarl.train.checkpoint import atomic_write_text
from fastmarl.train.pool import (
    baseline_factory,
    episode_returns,
    list_snapshots,
    load_group_policy,
    load_snapshot,
    scripted_policy,
    snapshot_step,
    sub_spec,
)
from fastmarl.train.rundir import CSVLog
from fastmarl.train.selfplay import CompetitiveResult, fixed_policies, read_config, train, validate


def train_and_evaluate(config: CompetitiveConfig, env=None, *, resume: str | Path | None = None
                       ) -> CompetitiveResult:
    """``fastmarl.train.selfplay.train`` (see there; ``resume`` continues a run), then, as the config
    asks, the evaluation matrix and ratings (two trained groups, ``matrix_episodes`` > 0) and the
    exploitability of every trained group (``exploitability_steps`` > 0, more than one trained group)."""
    result = train(config, env, resume=resume)
    cfg = read_config(result.run_dir)
    trained = list(result.learners)
    if cfg.matrix_episodes and len(trained) == 2:
        evaluate_matrix(result.run_dir, plot=cfg.plots, progress=cfg.progress)
    if cfg.exploitability_steps and len(trained) > 1:
        for g in trained:
            exploitability(result.run_dir, g, cfg.exploitability_steps, progress=cfg.progress)
    return result


def play_matrix(env, side_a: tuple[str, dict[str, Policy]], side_b: tuple[str, dict[str, Policy]],
                others: dict[str, Policy] | None = None, seed: int = 0,
                deterministic: bool = False) -> tuple[Tensor, Tensor]:
    """Every entry of side A against every entry of side B, ``env.num_envs`` paired
    episodes per cell. ``side_*`` = (group, label -> Policy); ``others`` drive the
    remaining groups. Returns (return of A, return of B), each (N_a, N_b, E)."""
    (ga, pa), (gb, pb) = side_a, side_b
    ra = torch.zeros(len(pa), len(pb), env.num_envs)
    rb = torch.zeros_like(ra)
    for i, pol_a in enumerate(pa.values()):
        for j, pol_b in enumerate(pb.values()):
            rets = episode_returns(JointPolicy({**(others or {}), ga: pol_a, gb: pol_b}), env, seed, deterministic)
            ra[i, j], rb[i, j] = rets[ga].cpu(), rets[gb].cpu()
    return ra, rb


# -- the matrix of a run ----------------------------------------------------------------------

def _spread(items: list, k: int) -> list:
    if len(items) <= k:
        return items
    idx = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in idx]


def evaluate_matrix(run_dir: str | Path, episodes: int | None = None, seed: int | None = None,
                    prior_games: float = 1.0, extra: dict[str, dict[str, Policy]] | None = None,
                    plot: bool = True, progress: bool = False) -> dict[str, Any]:
    """The snapshot matrix of a competitive run with two trained groups: writes
    ``matrix.csv``, ``ratings.csv`` and (``plot``) ``ratings.png`` into the run and returns
    {"sides", "labels", "steps", "return_a", "return_b", "scores", "ratings"}
    (returns and scores (N_a, N_b), ratings: label -> Elo per side). Each side's
    entries: its snapshots, ``random``, the env's ``baseline`` if it has one, and
    ``extra[group]`` (label -> Policy, e.g. other scripted references)."""
    run = Path(run_dir)
    cfg = read_config(run)
    episodes = episodes or cfg.matrix_episodes or 100
    seed = cfg.seed + 2 * EVAL_SEED_OFFSET if seed is None else seed
    env = make(cfg.env, num_envs=episodes, device=cfg.device, seed=seed, **cfg.env_kwargs)
    plan = validate(cfg, env)
    if len(plan.trained) != 2:
        raise ConfigError(f"the evaluation matrix needs exactly two trained groups, this run trained {plan.trained}")
    sides, labels, steps, policies = [], [], [], []
    for g in plan.trained:
        entries: dict[str, Policy] = {}
        side_steps: list[float] = []
        for path in _spread(list_snapshots(run / "pool", g), cfg.matrix_max_snapshots):
            entries[f"step {snapshot_step(path)}"] = load_snapshot(path, env.spec, cfg.device)[0]
            side_steps.append(float(snapshot_step(path)))
        entries["random"] = RandomPolicy(sub_spec(env.spec, [g]))
        side_steps.append(math.nan)
        if baseline_factory(env) is not None:
            entries["baseline"] = scripted_policy("baseline", env, cfg.env_kwargs)
            side_steps.append(math.nan)
        for label, pol in (extra or {}).get(g, {}).items():
            entries[label] = pol
            side_steps.append(math.nan)
        sides.append(g)
        labels.append(list(entries))
        steps.append(side_steps)
        policies.append(entries)
    fixed = fixed_policies(plan, env, cfg.device, cfg.env_kwargs)
    t0 = time.perf_counter()
    ra, rb = play_matrix(env, (sides[0], policies[0]), (sides[1], policies[1]), fixed, seed)
    scores = matrix_scores(ra, rb)
    na, nb = scores.shape
    wins = np.zeros((na + nb, na + nb))
    games = np.zeros_like(wins)
    wins[:na, na:] = episodes * scores.numpy()
    wins[na:, :na] = episodes * (1 - scores.numpy()).T
    games[:na, na:] = episodes
    games[na:, :na] = episodes
    elo = fit_elo(wins, games, prior_games)
    ratings = {sides[0]: dict(zip(labels[0], elo[:na])), sides[1]: dict(zip(labels[1], elo[na:]))}
    if progress:
        print(f"evaluation matrix {na} x {nb} x {episodes} episodes in {time.perf_counter() - t0:.1f}s", flush=True)
    mean_a, mean_b = ra.mean(-1), rb.mean(-1)
    rows = [{f"policy/{sides[0]}": la, f"policy/{sides[1]}": lb, f"return/{sides[0]}": float(mean_a[i, j]),
             f"return/{sides[1]}": float(mean_b[i, j]), f"score/{sides[0]}": float(scores[i, j])}
            for i, la in enumerate(labels[0]) for j, lb in enumerate(labels[1])]
    _write_csv(run / "matrix.csv", rows)
    _write_csv(run / "ratings.csv", [{"group": g, "policy": lab, "step": st, "rating": float(ratings[g][lab])}
                                     for g, labs, sts in zip(sides, labels, steps) for lab, st in zip(labs, sts)])
    if plot:
        plot_ratings(run, sides, labels, steps, ratings, f"self-play on {cfg.env}")
    return {"sides": sides, "labels": labels, "steps": steps, "return_a": mean_a, "return_b": mean_b,
            "scores": scores, "ratings": ratings}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if path.exists():
        path.unlink()
    log = CSVLog(path)
    for row in rows:
        log.write(row)


def plot_ratings(run: Path, sides: list[str], labels: list[list[str]], steps: list[list[float]],
                 ratings: dict[str, dict[str, float]], title: str = "") -> Path:
    """ratings.png: Elo of each side's snapshots vs training step; random/baseline as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sides), figsize=(5 * len(sides), 3.6), squeeze=False)
    for ax, g, labs, sts in zip(axes[0], sides, labels, steps):
        pts = [(s, ratings[g][lab]) for lab, s in zip(labs, sts) if not math.isnan(s)]
        ax.plot(*zip(*pts), "o-", markersize=4, label="snapshots")
        for k, (lab, s) in enumerate(zip(labs, sts)):
            if math.isnan(s):
                ax.axhline(ratings[g][lab], ls="--", color=f"C{k % 8 + 1}", label=lab)
        ax.set_xlabel("env steps")
        ax.set_ylabel("Elo")
        ax.set_title(g)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out = run / "ratings.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


# -- exploitability -----------------------------------------------------------------------------

def exploitability(run_dir: str | Path, group: str, steps: int, episodes: int | None = None,
                   seed: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Train a fresh best response of the other trained groups against ``group``'s
    final snapshot for ``steps`` env steps (run ``exploitability/br_vs_<group>``
    inside the run), then play both it and the run's final snapshots against that
    snapshot on the same episodes. Returns (and stores in ``exploitability.json``)
    per responder r: ``return_final/r``, ``return_best_response/r``, ``gap/r`` (=
    best response - final), and ``group``'s own returns against each."""
    run = Path(run_dir)
    cfg = read_config(run)
    snaps = list_snapshots(run / "pool", group)
    if not snaps:
        raise ConfigError(f"run {run} has no snapshot of group {group!r} (trained groups have pool/<group>/)")
    final = snaps[-1].resolve()
    env_groups = make(cfg.env, num_envs=1, **cfg.env_kwargs).spec.groups
    responders = [g for g in env_groups if g != group and cfg.groups.get(g, GroupSetup()).mode == "train"]
    if not responders:
        raise ConfigError(f"no other trained group responds to {group!r} in {run}")
    br_cfg = dataclasses.replace(
        cfg, groups={**cfg.groups, group: GroupSetup(mode="frozen", checkpoint=str(final))},
        total_steps=steps, schedule="simultaneous", snapshot_interval=0, eval_interval=0, matrix_episodes=0,
        exploitability_steps=0, runs_dir=str(run / "exploitability"), name=f"br_vs_{group}", seed=cfg.seed + 1,
        progress=progress)
    t0 = time.perf_counter()
    result = train(br_cfg)
    episodes = episodes or cfg.matrix_episodes or cfg.eval_episodes
    seed = cfg.seed + 3 * EVAL_SEED_OFFSET if seed is None else seed
    env = make(cfg.env, num_envs=episodes, device=cfg.device, seed=seed, **cfg.env_kwargs)
    frozen = load_group_policy(final, group, env.spec, cfg.device)
    finals = {r: load_group_policy(list_snapshots(run / "pool", r)[-1], r, env.spec, cfg.device) for r in responders}
    others = {g: p for g, p in result.fixed.items() if g != group}
    vs_final = episode_returns(JointPolicy({**others, group: frozen, **finals}), env, seed)
    vs_br = episode_returns(JointPolicy({**others, group: frozen, **result.learners}), env, seed)
    out: dict[str, Any] = {"group": group, "snapshot": final.name, "snapshot_step": snapshot_step(final),
                           "best_response_steps": result.global_step, "episodes": episodes,
                           "seconds": time.perf_counter() - t0,
                           f"return/{group}_vs_final": vs_final[group].mean().item(),
                           f"return/{group}_vs_best_response": vs_br[group].mean().item()}
    for r in responders:
        a, b = vs_final[r].mean().item(), vs_br[r].mean().item()
        out[f"return_final/{r}"], out[f"return_best_response/{r}"], out[f"gap/{r}"] = a, b, b - a
        out[f"gap_stderr/{r}"] = ((vs_br[r] - vs_final[r]).std() / math.sqrt(episodes)).item()
    path = run / "exploitability.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored[group] = out
    atomic_write_text(path, json.dumps(stored, indent=2) + "\n")
    if progress:
        gaps = "  ".join(f"gap/{r}={out[f'gap/{r}']:.2f}" for r in responders)
        print(f"exploitability of {group} @ step {out['snapshot_step']:,}: {gaps}", flush=True)
    return out
