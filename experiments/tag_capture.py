"""Predators in simple_tag_v3: independent Q-learners against a scripted and a learning prey.

Conditions (the three predators are group ``adversary``, the prey group ``agent``):

- ``iql_vs_scripted``: deep IQL predators (feed-forward, shared network with
  agent ids) against the scripted evading prey (:class:`fastmarl.envs.scripted_tag.TagPreyScripted`,
  played through :class:`fastmarl.envs.wrappers.ScriptedGroups`);
- ``tabular_vs_scripted``: tabular IQL predators (one table each) through a
  discretization of their observation: own velocity (3 x 3 bins) and the
  prey's relative position (11 x 11 bins in [-1.1, 1.1]^2); every other
  feature gets one bin (ignored);
- ``iql_vs_learning`` / ``tabular_vs_learning``: the same predators while a deep
  IQL prey learns at the same time;
- ``single_iql_vs_scripted``: one deep IQL predator alone (``num_adversaries=1``)
  against the scripted prey.

References without learning: scripted greedy pursuers (:class:`TagChaserScripted`)
and uniformly random predators against the scripted prey.

``--evals`` times per run (and once before training), a greedy evaluation on ``--eval-episodes``
episodes (fresh env, fixed seed) records the predators' and prey's positions
(from the predators' observations) and measures, with
:mod:`fastmarl.analysis.pursuit`: capture rate, captures per episode, time to
first capture, the resultant length R of the predators' bearings at the first
capture, per-predator distance / heading profiles and role shares.
Learning-prey runs are also evaluated against the scripted prey at the end.

    python experiments/tag_capture.py                  # all runs (a few minutes each, one at a time, 1 thread)
    python experiments/tag_capture.py --only iql_vs_scripted --seeds 0
    python experiments/tag_capture.py --report-only    # rebuild docs/tag_capture.md, figures and GIFs from runs/

Runs are kept in runs/tag_capture/<condition>_s<seed>.json (+ weights for the
GIFs); an interrupted invocation skips finished runs (``--force`` reruns them).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import fastmarl
from fastmarl.algos.lockstep import Lockstep, MemberPolicy
from fastmarl.algos.q_learning import QLearner
from fastmarl.algos.tabular import TabularQ
from fastmarl.analysis import pursuit as pu
from fastmarl.config import EVAL_SEED_OFFSET, QConfig, TabularConfig, validate_q_config
from fastmarl.envs.api import EnvSpec, JointPolicy
from fastmarl.envs.episodes import record_episode
from fastmarl.envs.scripted import RandomPolicy
from fastmarl.envs.scripted_tag import TagChaserScripted, TagPreyScripted
from fastmarl.envs.wrappers import Discretizer, ScriptedGroups
from fastmarl.train.loop import LoopSettings, run_loop

ENV = "simple_tag_v3"
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "tag_capture"
DOC = ROOT / "docs" / "tag_capture.md"
FIG = ROOT / "docs" / "figures"
EVAL_SEED = EVAL_SEED_OFFSET  # evaluation seeds, as fastmarl.train.runner's
NUM_OBSTACLES = 1 + 1  # simple_tag's default

# condition -> (predator learner, prey, number of predators)
CONDITIONS = {
    "iql_vs_scripted": ("deep", "scripted", 3),
    "tabular_vs_scripted": ("tabular", "scripted", 3),
    "iql_vs_learning": ("deep", "learning", 3),
    "tabular_vs_learning": ("tabular", "learning", 3),
    "single_iql_vs_scripted": ("deep", "scripted", 1),
}
LABELS = {"iql_vs_scripted": "deep IQL vs scripted prey", "tabular_vs_scripted": "tabular IQL vs scripted prey",
          "iql_vs_learning": "deep IQL vs learning prey", "tabular_vs_learning": "tabular IQL vs learning prey",
          "single_iql_vs_scripted": "1 deep IQL predator vs scripted prey"}
COLORS = {"iql_vs_scripted": "tab:blue", "tabular_vs_scripted": "tab:orange", "iql_vs_learning": "tab:green",
          "tabular_vs_learning": "tab:red", "single_iql_vs_scripted": "tab:purple"}


def deep_config(seed: int, steps: int) -> QConfig:
    """Deep IQL for either side (commit-independent: every field that matters is set here)."""
    return QConfig(algo="iql", env=ENV, total_steps=steps, num_envs=16, seed=seed, recurrent=False, num_layers=2,
                   hidden_size=64, share_params=True, agent_id=True, buffer_size=2000, batch_size=32,
                   learning_starts=64, update_interval=64, lr=1e-3, optimizer="adam", gamma=0.95, grad_clip=10.0,
                   double_q=True, target_update="hard", target_update_interval=100, epsilon_start=1.0,
                   epsilon_end=0.05, epsilon_anneal_steps=max(1, steps // 5), standardise_rewards=False)


def tabular_config(seed: int, steps: int) -> TabularConfig:
    return TabularConfig(total_steps=steps, lr=0.1, gamma=0.95, epsilon_start=1.0, epsilon_end=0.05,
                         epsilon_decay_steps=max(1, steps // 2), shared_table=False, seed=seed)


def tabular_discretizer(num_adversaries: int) -> Discretizer:
    """Adversary obs [vel 2, pos 2, obstacles 2L, others 2(P-1) + 2 (prey), prey vel 2] -> index."""
    P = num_adversaries
    D = 4 + 2 * NUM_OBSTACLES + 2 * P + 2
    bins, low, high = [1] * D, [-1.0] * D, [1.0] * D
    bins[0] = bins[1] = 3  # own velocity: backwards / still / forwards per axis
    prey = 4 + 2 * NUM_OBSTACLES + 2 * (P - 1)
    for d in (prey, prey + 1):
        bins[d], low[d], high[d] = 11, -1.1, 1.1
    return Discretizer(D, "bins", bins, low, high)


# -- the learners: library learners, one per side, in lockstep (fastmarl.algos.lockstep) ---------

def _sub_spec(spec: EnvSpec, groups: list[str]) -> EnvSpec:
    return EnvSpec(spec.env_id, {g: spec.groups[g] for g in groups}, spec.state_dim, spec.max_episode_steps,
                   spec.has_action_mask, spec.has_alive_mask)


def deep_learner(spec: EnvSpec, groups: list[str], cfg: QConfig) -> QLearner:
    """Deep IQL for ``groups`` of an env (its own networks, replay buffer and generator)."""
    sub = _sub_spec(spec, groups)
    return QLearner(sub, cfg, validate_q_config(cfg, sub), "cpu")


def tabular_learner(spec: EnvSpec, groups: list[str], cfg: TabularConfig, discretizer: Discretizer) -> TabularQ:
    """Tabular IQL for ``groups`` (the predators' discretized observations)."""
    return TabularQ(_sub_spec(spec, groups), cfg, "cpu", {g: discretizer for g in groups})


def snapshot(learner) -> dict:
    """A copy of a learner's weights (Q-networks or tables), for the GIFs."""
    return {k: v.clone() for k, v in learner.weights().items()}


# -- building, evaluating, training ------------------------------------------------------

def make_env(num_envs: int, seed: int, P: int, prey: str, prey_policy=None):
    """The env the predators act in: prey scripted (wrapped away) or part of the env."""
    env = fastmarl.make(ENV, num_envs=num_envs, seed=seed, num_adversaries=P)
    if prey == "scripted":
        env = ScriptedGroups(env, {"agent": prey_policy or TagPreyScripted(env.spec)})
    return env


@torch.no_grad()
def evaluate(policy, learning_prey: bool, P: int, episodes: int, seed: int) -> dict:
    """Greedy episodes of ``policy`` (the predators', or predators' and prey's with ``learning_prey``;
    else against the scripted prey)."""
    env = make_env(episodes, seed, P, "learning" if learning_prey else "scripted")
    gen = torch.Generator().manual_seed(seed)
    ts = env.reset(seed=seed)
    T = env.spec.max_episode_steps
    frames, prey_return = [], torch.zeros(episodes)
    carry = policy.initial_carry(episodes)
    for _ in range(T):
        actions, carry = policy.act(ts, carry, True, gen)
        ts = env.step(actions)
        frames.append(pu.tag_positions(ts.final_obs["adversary"], P, 1, NUM_OBSTACLES))
        full = env.last_timestep if isinstance(env, ScriptedGroups) else ts
        prey_return += full.reward["agent"][:, 0]
    tr = {k: torch.stack([f[k] for f in frames]) for k in frames[0]}  # (T, E, ., 2)
    return measure(tr, prey_return)


def measure(tr: dict[str, Tensor], prey_return: Tensor) -> dict:
    prey_pos = tr["prey_pos"][:, :, 0]
    stats = pu.capture_stats(pu.contacts(tr["pred_pos"], tr["prey_pos"]))
    out = pu.summarise_captures(stats)
    spread = pu.spread_at_capture(tr["pred_pos"], prey_pos, stats["first_capture"])
    hit = ~torch.isnan(spread)
    out["spread_R"] = spread[hit].mean().item() if bool(hit.any()) else math.nan
    out["spread_R_values"] = spread[hit].tolist()
    out["prey_return"] = prey_return.mean().item()
    prof = pu.predator_profiles(tr["pred_pos"], tr["pred_vel"], prey_pos, lead=3)
    for k, v in prof.items():
        out[f"{k}_by_predator"] = v.nanmean((0, 1)).tolist()  # (P,)
        out[f"{k}_by_step"] = v.nanmean(1).tolist()  # (T, P): per predator index
        # per episode, predators ranked by mean distance (0 = closest): role structure independent of identity
        order = prof["distance"].mean(0).argsort(-1)  # (E, P)
        ranked = v.gather(-1, order[None].expand_as(v))
        out[f"{k}_by_rank_step"] = ranked.nanmean(1).tolist()
        out[f"{k}_by_rank"] = ranked.nanmean((0, 1)).tolist()
    out["role_shares"] = pu.role_shares(prof["distance"]).tolist()
    return out


def build(cond: str, seed: int, steps: int):
    """(training env, the lockstep learner: member "predators", and "prey" against the learning prey)."""
    kind, prey, P = CONDITIONS[cond]
    dcfg = deep_config(seed, steps)
    E = dcfg.num_envs if kind == "deep" else 64
    env = make_env(E, seed, P, prey)
    full_spec = env.env.spec if isinstance(env, ScriptedGroups) else env.spec
    if kind == "deep":
        predators = deep_learner(full_spec, ["adversary"], dcfg)
    else:
        predators = tabular_learner(full_spec, ["adversary"], tabular_config(seed, steps), tabular_discretizer(P))
    members = {"predators": (predators, ["adversary"])}
    if prey == "learning":
        pcfg = deep_config(seed + 10_000, steps)
        if kind != "deep":
            pcfg = QConfig(**{**pcfg.to_dict(), "num_envs": E})
        members["prey"] = (deep_learner(full_spec, ["agent"], pcfg), ["agent"])
    return env, Lockstep(members, steps)


def train_run(cond: str, seed: int, steps: int, eval_every: int, eval_episodes: int, out: Path) -> dict:
    """One run through the library's training loop (``run_loop`` over a :class:`Lockstep` of the
    predators' and, against the learning prey, the prey's learner); its callback measures the
    training capture rate and runs the capture evaluations every ``eval_every`` env steps."""
    torch.manual_seed(seed)
    kind, prey, P = CONDITIONS[cond]
    env, learner = build(cond, seed, steps)
    E = env.num_envs
    learning = prey == "learning"
    predators = learner.policy("predators")
    members = {name: m.learner for name, m in learner.members.items()}
    train_rows, evals, snapshots = [], [], {}
    t0 = time.perf_counter()
    state = {"next_eval": 0, "captured": torch.zeros(E, dtype=torch.bool), "done": 0.0, "caught": 0.0}

    def capture_eval(step: int) -> None:
        res = evaluate(learner if learning else predators, learning, P, eval_episodes, seed + EVAL_SEED)
        evals.append({"step": step, "time": time.perf_counter() - t0, **res})
        print(f"  {cond} s{seed} step {step:>8,} {time.perf_counter() - t0:6.1f}s  capture rate "
              f"{res['capture_rate']:.2f}  captures/ep {res['captures_per_episode']:.2f}  R {res['spread_R']:.2f}"
              f"  prey return {res['prey_return']:.1f}", flush=True)
        state["next_eval"] += eval_every

    def callback(info) -> None:
        ts = learner.ts
        # the predators' team reward is > 0 exactly when some predator touches the prey
        captured = state["captured"] | (ts.reward["adversary"][:, 0] > 0)
        if bool(ts.done.any()):
            state["done"] += ts.done.sum().item()
            state["caught"] += (captured & ts.done).sum().item()
        state["captured"] = captured & ~ts.done
        if info.step % (E * 625) == 0 and state["done"]:
            train_rows.append({"step": info.step, "capture_rate": state["caught"] / state["done"],
                               "time": time.perf_counter() - t0})
            state["done"] = state["caught"] = 0.0
        if info.step >= state["next_eval"]:
            capture_eval(info.step)

    capture_eval(0)  # "early": before training
    snapshots["early"] = {"step": 0, "predators": snapshot(members["predators"]),
                          "prey": snapshot(members["prey"]) if learning else None}
    settings = LoopSettings(seed=seed, total_steps=steps, log_interval=steps, eval_interval=0, eval_episodes=0,
                            checkpoint_interval=0, keep_checkpoints=1, gif=False, tensorboard=False, progress=False,
                            title=f"{cond} {ENV}", info={"algo": cond, "env": ENV})
    result = run_loop(settings, learner, env, None, callback=callback)
    step = result.global_step
    wall = time.perf_counter() - t0
    final_vs_scripted = evaluate(predators, False, P, eval_episodes, seed + EVAL_SEED) if learning else None
    snapshots["late"] = {"step": step, "predators": snapshot(members["predators"]),
                         "prey": snapshot(members["prey"]) if learning else None}
    torch.save(snapshots, out / f"{cond}_s{seed}.pt")
    result = {"condition": cond, "seed": seed, "steps": step, "wall_s": wall, "eval_every": eval_every,
              "eval_episodes": eval_episodes, "train": train_rows, "evals": evals,
              "final_vs_scripted": final_vs_scripted}
    (out / f"{cond}_s{seed}.json").write_text(json.dumps(result) + "\n")
    return result


def references(eval_episodes: int, out: Path) -> dict:
    """Scripted chasers and random predators vs the scripted prey (no learning)."""
    res = {}
    for P in (3, 1):
        base = fastmarl.make(ENV, num_envs=2, num_adversaries=P)
        for name, pol in (("chaser", TagChaserScripted(base.spec)),
                          ("random", RandomPolicy(_sub_spec(base.spec, ["adversary"])))):
            res[f"{name}_P{P}"] = evaluate(JointPolicy({"adversary": pol}), False, P, eval_episodes, EVAL_SEED)
    res["random_bearings_R_P3"] = pu.random_resultant_length(3)
    (out / "references.json").write_text(json.dumps(res) + "\n")
    return res


# -- report ---------------------------------------------------------------------------------

def load_runs(out: Path) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for p in sorted(out.glob("*_s*.json")):
        r = json.loads(p.read_text())
        runs.setdefault(r["condition"], []).append(r)
    return runs


def _curve(runs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    steps = np.array([e["step"] for e in runs[0]["evals"]])
    vals = np.array([[e[key] for e in r["evals"]] for r in runs], dtype=float)
    return steps, vals


def plots(runs: dict[str, list[dict]], refs: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIG.mkdir(parents=True, exist_ok=True)
    names = []
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for cond, rs in runs.items():
        for ax, key in zip(axes, ("capture_rate", "captures_per_episode", "spread_R")):
            steps, vals = _curve(rs, key)
            m = np.nanmean(vals, 0)
            ax.plot(steps[1:] / 1e3, m[1:], color=COLORS[cond], label=f"{LABELS[cond]} ({len(rs)} seed{'s' * (len(rs) > 1)})")
            if len(rs) > 1:
                ax.fill_between(steps[1:] / 1e3, np.nanmin(vals, 0)[1:], np.nanmax(vals, 0)[1:], color=COLORS[cond],
                                alpha=0.2)
    for ax, key, title in zip(axes, ("capture_rate", "captures_per_episode", "spread_R"),
                              ("capture rate (greedy eval)", "captures per episode", "R at first capture (0 = surrounded)")):
        if key != "spread_R":
            ax.axhline(refs["chaser_P3"][key], color="k", ls="--", lw=1, label="3 scripted chasers")
            ax.axhline(refs["chaser_P1"][key], color="gray", ls=":", lw=1, label="1 scripted chaser")
        else:
            ax.axhline(refs["random_bearings_R_P3"], color="k", ls="--", lw=1, label="3 random bearings")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("env steps (thousands, log scale)")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, loc="lower right")
    axes[2].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(FIG / "tag_capture_curves.png", dpi=80)
    plt.close(fig)
    names.append("tag_capture_curves.png")

    # per-predator profiles at the last evaluation, by predator index and by per-episode rank
    show = [c for c in ("iql_vs_scripted", "tabular_vs_scripted", "iql_vs_learning") if c in runs]
    fig, axes = plt.subplots(2, len(show), figsize=(4 * len(show), 5.6), squeeze=False)
    for j, cond in enumerate(show):
        last = runs[cond][0]["evals"][-1]
        for i, (key, ylabel) in enumerate((("distance_by_step", "distance to prey"), ("heading_by_step", "heading cos"))):
            ax = axes[i, j]
            v = np.array(last[key])
            rk = np.array(last[key.replace("_by_step", "_by_rank_step")])
            t = np.arange(1, v.shape[0] + 1)
            for p in range(v.shape[1]):
                ax.plot(t, v[:, p], label=f"predator {p}")
            for p, ls in zip(range(rk.shape[1]), (":", "--", "-.")):
                ax.plot(t, rk[:, p], "k", ls=ls, lw=1, label=["closest", "middle", "farthest"][p] + " (ranked per episode)")
            ax.set_title(f"{LABELS[cond]}, seed {runs[cond][0]['seed']}", fontsize=9)
            ax.set_ylabel(ylabel)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        axes[0, j].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(FIG / "tag_capture_profiles.png", dpi=72)
    plt.close(fig)
    names.append("tag_capture_profiles.png")
    return names


def gifs(runs: dict[str, list[dict]], out: Path) -> list[str]:
    made = []
    for cond in ("iql_vs_scripted", "iql_vs_learning"):
        path = out / f"{cond}_s0.pt"
        if cond not in runs or not path.exists():
            continue
        kind, prey, P = CONDITIONS[cond]
        snaps = torch.load(path, weights_only=False)
        for when in ("early", "late"):
            if when not in snaps:
                continue
            env = make_env(1, 7, P, prey)
            spec = env.env.spec if isinstance(env, ScriptedGroups) else env.spec
            policies = {}
            for who, group in (("predators", "adversary"), ("prey", "agent")):
                if snaps[when].get(who) is not None:
                    learner = deep_learner(spec, [group], deep_config(0, 1000))
                    learner.load_weights(snaps[when][who])
                    policies[group] = MemberPolicy(learner, [group])
            name = f"tag_capture_{cond}_{when}.gif"
            record_episode(JointPolicy(policies), env, FIG / name, deterministic=True, seed=7, fps=8)
            made.append((name, snaps[when]["step"]))
    return made


def _ms(vals: list[float], fmt: str = "{:.2f}") -> str:
    v = np.array([x for x in vals if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return "-"
    if len(v) == 1:
        return fmt.format(v[0])
    return f"{fmt.format(v.mean())} ({fmt.format(v.min())} to {fmt.format(v.max())})"


def report(out: Path, make_gifs: bool = True) -> str:
    runs = load_runs(out)
    refs = json.loads((out / "references.json").read_text())
    figs = plots(runs, refs)
    made = gifs(runs, out) if make_gifs else []
    L = ["# Predators in simple_tag: independent Q-learners, capture rate and coordination", ""]
    L.append("`python experiments/tag_capture.py` (all runs, then this report); `--report-only` rebuilds it from "
             "`runs/tag_capture/`. Measures: `fastmarl.analysis.pursuit`; scripted prey and pursuers: "
             "`fastmarl.envs.scripted_tag`; the scripted prey is played through `fastmarl.envs.wrappers.ScriptedGroups`, "
             "so only the predators act in the env the learners see.")
    L.append("")
    L.append("## Set-up")
    L.append("")
    any_run = next(iter(runs.values()))[0]
    L.append(f"simple_tag_v3 with mpe2's defaults (3 predators of size 0.075, max speed 1.0; 1 prey of size 0.05, max "
             f"speed 1.3; 2 obstacles; 25 steps; discrete actions). A capture is simple_tag's collision test, "
             f"distance < 0.125. Runs train on 1 torch thread, one at a time, for the env steps in the table below, "
             f"and are evaluated {len(any_run['evals']) - 1} times (plus once before training) on "
             f"{any_run['eval_episodes']} greedy episodes (the same start states every time).")
    L.append("")
    L.append("- Deep IQL (`fastmarl.algos.q_learning.QLearner`, predators and a learning prey in lockstep through `fastmarl.algos.lockstep` and the one training loop): feed-forward Q-network "
             "2x64 ReLU shared by the predators with a one-hot agent id, double Q, hard target copy every 100 "
             "updates, Adam lr 1e-3, gamma 0.95, 16 envs, one update of 32 stored episodes every 64 env steps, "
             "epsilon 1 -> 0.05 over the first fifth of training. Each predator learns on its own reward "
             "(simple_tag pays every predator +10 per contact of any predator: a shared team reward).")
    L.append("- Tabular IQL (`fastmarl.algos.tabular.TabularQ`): one table per predator over 3 x 3 bins of its "
             "velocity and 11 x 11 bins of the prey's relative position in [-1.1, 1.1]^2 (1,089 states; the other "
             "observation features get one bin), lr 0.1, gamma 0.95, 64 envs, epsilon 1 -> 0.05 over half of training.")
    L.append("- Scripted prey (`TagPreyScripted`): flees from the predators' inverse-square-distance-weighted "
             "centroid, pushed back from the walls beyond |x| = 0.7 and from obstacles, moves with the discrete "
             "action closest to that direction. Learning prey: the deep IQL above on the prey group, its own "
             "networks and reward (-10 per contact, boundary penalty).")
    L.append("")
    L.append("## Results")
    L.append("")
    L.append(f"![capture curves](figures/{figs[0]})")
    L.append("")
    L.append("Greedy evaluation; lines are means over seeds, bands min-max. Dashed: 3 scripted greedy pursuers "
             "(`TagChaserScripted`, no learning) against the same scripted prey; dotted: 1 scripted pursuer.")
    L.append("")
    L.append("| condition | seeds | env steps | capture rate (before training -> end) | captures / episode | time to first capture "
             "(steps, captured episodes) | R at capture | prey return | wall time per run |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for cond in CONDITIONS:
        if cond not in runs:
            continue
        rs = runs[cond]
        first = [r["evals"][0]["capture_rate"] for r in rs]
        last = [r["evals"][-1] for r in rs]
        L.append(f"| {LABELS[cond]} | {len(rs)} | {rs[0]['steps']:,} | {_ms(first)} -> {_ms([e['capture_rate'] for e in last])} | "
                 f"{_ms([e['captures_per_episode'] for e in last])} | {_ms([e['time_to_first_capture'] for e in last], '{:.1f}')} | "
                 f"{_ms([e['spread_R'] for e in last])} | {_ms([e['prey_return'] for e in last], '{:.1f}')} | "
                 f"{_ms([r['wall_s'] for r in rs], '{:.0f}')} s |")
    for key, label in (("chaser_P3", "3 scripted pursuers (reference)"), ("chaser_P1", "1 scripted pursuer (reference)"),
                       ("random_P3", "3 random predators (reference)"), ("random_P1", "1 random predator (reference)")):
        e = refs[key]
        L.append(f"| {label} | - | - | {e['capture_rate']:.2f} | {e['captures_per_episode']:.2f} | "
                 f"{_ms([e['time_to_first_capture']], '{:.1f}')} | {_ms([e['spread_R']])} | {e['prey_return']:.1f} | - |")
    L.append("")
    L.append("Values are means over seeds (min to max in brackets). Captures per episode count contact onsets (a "
             "prey touched after a step without contact); R is the circular resultant length of the predators' "
             f"bearings from the prey at the first capture (0 = evenly surrounded, 1 = all from one side; "
             f"{refs['random_bearings_R_P3']:.3f} for 3 independent uniform bearings; always 1 for a single predator).")
    L.append("")
    learn = [c for c in ("iql_vs_learning", "tabular_vs_learning") if c in runs]
    if learn:
        L.append("Predators trained against the learning prey, evaluated at the end against the scripted prey: " +
                 "; ".join(f"{LABELS[c]}: capture rate {_ms([r['final_vs_scripted']['capture_rate'] for r in runs[c]])}, "
                           f"{_ms([r['final_vs_scripted']['captures_per_episode'] for r in runs[c]])} captures per episode"
                           for c in learn) + ".")
        L.append("")
    L.append("### Roles")
    L.append("")
    L.append(f"![per-predator profiles](figures/{figs[1]})")
    L.append("")
    L.append("Last evaluation of seed 0: mean distance to the prey and heading cosine (velocity vs direction to "
             "the prey) per step, per predator index (coloured) and per rank within each episode (black: the "
             "predator closest to the prey on average, the middle one, the farthest).")
    L.append("")
    L.append("| condition | closest-predator share per index (chaser) | mean distance per predator | heading cos per "
             "predator | heading cos towards the prey 3 steps later | by rank closest / middle / farthest: distance; heading |")
    L.append("|---|---|---|---|---|---|")
    for cond in CONDITIONS:
        if cond not in runs or CONDITIONS[cond][2] == 1:
            continue
        for r in runs[cond]:
            e = r["evals"][-1]
            f = lambda xs, fmt="{:.2f}": " / ".join(fmt.format(x) for x in xs)  # noqa: E731
            L.append(f"| {LABELS[cond]}, seed {r['seed']} | {f(e['role_shares'])} | {f(e['distance_by_predator'])} | "
                     f"{f(e['heading_by_predator'])} | {f(e['heading_lead_by_predator'])} | "
                     f"{f(e['distance_by_rank'])}; {f(e['heading_by_rank'])} |")
    e = refs["chaser_P3"]
    L.append(f"| 3 scripted pursuers (reference: identical, identity-free) | {f(e['role_shares'])} | "
             f"{f(e['distance_by_predator'])} | {f(e['heading_by_predator'])} | {f(e['heading_lead_by_predator'])} | "
             f"{f(e['distance_by_rank'])}; {f(e['heading_by_rank'])} |")
    L.append("")
    L.append("Every evaluation starts from the same 200 start states, so the closest-predator shares of a policy "
             "that ignores identity need not be exactly 1/3: the scripted pursuers' row is the reference for these "
             "start states.")
    L.append("")
    if made:
        L.append("### Early vs late behaviour")
        L.append("")
        L.append("Greedy episodes from the same start (seed 7), seed-0 runs; red: predators, green: prey, grey: "
                 "obstacles.")
        L.append("")
        for name, step in made:
            when = "before training" if step == 0 else f"after {step:,} env steps"
            L.append(f"- {LABELS[name[len('tag_capture_'):].rsplit('_', 1)[0]]}, {when}: ![{name}](figures/{name})")
        L.append("")
    L.append(WHAT_HEADER)
    L.append("")
    L.append(findings(runs, refs))
    L.append("")
    L.append(IN_SHORT)
    L.append("")
    text = "\n".join(L)
    DOC.write_text(text)
    return text


WHAT_HEADER = "## What the data shows"
IN_SHORT = """In short (a reading of the numbers above, from the runs of 2026-11-24): independent deep Q-learners learn to
catch the faster scripted prey almost as often as scripted greedy pursuit does, but as a pack of chasers, not as
a team with roles. All three head at the prey's current position (heading towards where it will be 3 steps
later is no higher), they arrive from one side (R at capture well above what random bearings give, a little below
greedy pursuit), and no predator index is consistently the one closest to the prey (its share is within the
range of identity-free scripted pursuers on the same start states). Three such predators capture less often
than three lone predators would if each succeeded independently, so the shared capture reward does not turn
into division of labour here. Against a prey that learns at the same time, the capture rate first overshoots
(the prey has not learned to flee yet) and then drops as it does; those predators aim slightly ahead of their
prey, and they transfer only partly to the scripted prey. Tabular IQL on a coarse discretization learns the same
pursuit far more slowly per env step (but at about 10x the env steps per second); only the predator nearest to
the prey heads at it, since beyond 1.1 the discretized prey position is clipped to the edge bins. Limits: one
training length per learner (500k env steps for deep IQL, 2M for tabular), 3 seeds for the scripted-prey runs
and 2 or 1 for the learning-prey ones, 200 evaluation episodes (a capture rate's standard error is about 0.03)."""


def findings(runs: dict[str, list[dict]], refs: dict) -> str:
    """Numbers-first summary, computed from the runs (see the tables above for the details)."""
    S = []

    def last(cond, key):
        return [r["evals"][-1][key] for r in runs[cond]]

    if "iql_vs_scripted" in runs:
        cr = last("iql_vs_scripted", "capture_rate")
        S.append(f"- Deep IQL predators learn to catch the scripted prey: the greedy capture rate goes from "
                 f"{_ms([r['evals'][0]['capture_rate'] for r in runs['iql_vs_scripted']])} before training to "
                 f"{_ms(cr)} after {runs['iql_vs_scripted'][0]['steps']:,} steps over {len(cr)} seeds, with "
                 f"{_ms(last('iql_vs_scripted', 'captures_per_episode'))} captures per episode; 3 scripted greedy "
                 f"pursuers reach {refs['chaser_P3']['capture_rate']:.2f} and "
                 f"{refs['chaser_P3']['captures_per_episode']:.2f}.")
    if "tabular_vs_scripted" in runs:
        S.append(f"- Tabular IQL on the 1,089-state discretization reaches a capture rate of "
                 f"{_ms(last('tabular_vs_scripted', 'capture_rate'))} "
                 f"({_ms(last('tabular_vs_scripted', 'captures_per_episode'))} captures per episode).")
    if "single_iql_vs_scripted" in runs:
        one = last("single_iql_vs_scripted", "capture_rate")
        S.append(f"- A single deep IQL predator trained alone catches the scripted prey in {_ms(one)} of episodes "
                 f"(1 scripted pursuer: {refs['chaser_P1']['capture_rate']:.2f}); time to first capture "
                 f"{_ms(last('single_iql_vs_scripted', 'time_to_first_capture'), '{:.1f}')} steps vs "
                 + (f"{_ms(last('iql_vs_scripted', 'time_to_first_capture'), '{:.1f}')} for three" if "iql_vs_scripted" in runs else "-") + ".")
    if "single_iql_vs_scripted" in runs and "iql_vs_scripted" in runs:
        c1, c3 = np.mean(last("single_iql_vs_scripted", "capture_rate")), np.mean(last("iql_vs_scripted", "capture_rate"))
        s1, s3 = refs["chaser_P1"]["capture_rate"], refs["chaser_P3"]["capture_rate"]
        S.append(f"- Three vs one: if three predators each caught the prey as often as one alone, independently, the "
                 f"team would capture in 1 - (1 - c1)^3 of episodes: {1 - (1 - c1) ** 3:.2f} for the learned predators "
                 f"(c1 = {c1:.2f}), which they do not reach ({c3:.2f}); the scripted pursuers beat that mark "
                 f"({s3:.2f} vs {1 - (1 - s1) ** 3:.2f}). Captures per episode: "
                 f"{np.mean(last('iql_vs_scripted', 'captures_per_episode')):.2f} for the learned team vs 3 x "
                 f"{np.mean(last('single_iql_vs_scripted', 'captures_per_episode')):.2f} = "
                 f"{3 * np.mean(last('single_iql_vs_scripted', 'captures_per_episode')):.2f} for three lone predators "
                 "(the single-predator runs start from other start states, so this is indicative).")
    for cond in ("iql_vs_learning", "tabular_vs_learning"):
        if cond in runs:
            peak = [max(e["capture_rate"] for e in r["evals"]) for r in runs[cond]]
            S.append(f"- {LABELS[cond]}: the capture rate peaks at {_ms(peak)} during training and is "
                     f"{_ms(last(cond, 'capture_rate'))} at the end, as the prey learns to evade.")
            S.append(f"- {LABELS[cond]}: capture rate {_ms(last(cond, 'capture_rate'))} against the co-learning prey "
                     f"at the end (prey return {_ms(last(cond, 'prey_return'), '{:.1f}')}); the same predators "
                     f"against the scripted prey: "
                     f"{_ms([r['final_vs_scripted']['capture_rate'] for r in runs[cond]])}.")
    rb = refs["random_bearings_R_P3"]
    for cond in ("iql_vs_scripted", "tabular_vs_scripted", "iql_vs_learning"):
        if cond in runs:
            R = last(cond, "spread_R")
            S.append(f"- Surrounding ({LABELS[cond]}): R at the first capture {_ms(R)}, vs {rb:.2f} for random bearings "
                     f"and {refs['chaser_P3']['spread_R']:.2f} for the scripted pursuers; "
                     + ("below random bearings: the predators close in from different sides."
                        if np.nanmean(R) < rb - 0.05 else
                        "above random bearings: the predators arrive from the same side (they chase as a pack, "
                        "not an encirclement)." if np.nanmean(R) > rb + 0.05 else "about what random bearings give."))
    for cond in ("iql_vs_scripted", "tabular_vs_scripted", "iql_vs_learning"):
        if cond in runs:
            shares = np.array([r["evals"][-1]["role_shares"] for r in runs[cond]])
            top = shares.max(1)
            heading = np.array([r["evals"][-1]["heading_by_rank"] for r in runs[cond]])
            lead = np.array([r["evals"][-1]["heading_lead_by_rank"] for r in runs[cond]]) - heading
            S.append(f"- Roles ({LABELS[cond]}): the most frequent chaser (closest predator) per seed holds "
                     f"{', '.join(f'{x:.2f}' for x in top)} of episodes, against "
                     f"{max(refs['chaser_P3']['role_shares']):.2f} for the identical scripted pursuers on the same "
                     "start states (1/3 on average over start states if roles are not tied to identity); "
                     f"heading towards the prey 3 steps ahead minus heading towards its current position, "
                     f"closest / middle / farthest: {' / '.join(f'{x:+.2f}' for x in lead.mean(0))} (positive = "
                     "aiming ahead of the prey, i.e. cutting off); heading cosine towards the prey, closest / middle / "
                     f"farthest: {' / '.join(f'{x:.2f}' for x in heading.mean(0))}.")
    return "\n".join(S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=500_000, help="env steps per deep IQL run")
    ap.add_argument("--tabular-steps", type=int, default=2_000_000, help="env steps per tabular run vs the scripted prey")
    ap.add_argument("--tabular-learning-steps", type=int, default=1_000_000,
                    help="env steps of the tabular run vs the learning prey (its deep prey sets the cost)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the main runs (*_vs_scripted)")
    ap.add_argument("--learning-seeds", type=int, nargs="+", default=[0], help="seeds of the learning-prey runs")
    ap.add_argument("--only", nargs="+", choices=list(CONDITIONS), default=None)
    ap.add_argument("--evals", type=int, default=20, help="evaluations per run (plus one before training)")
    ap.add_argument("--eval-episodes", type=int, default=200)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--force", action="store_true", help="rerun finished runs")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--no-gifs", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        if args.force or not (args.out / "references.json").exists():
            references(args.eval_episodes, args.out)
        for cond in args.only or list(CONDITIONS):
            seeds = args.learning_seeds if CONDITIONS[cond][1] == "learning" else args.seeds
            for seed in seeds:
                if (args.out / f"{cond}_s{seed}.json").exists() and not args.force:
                    print(f"{cond} seed {seed}: done, skipped")
                    continue
                kind, prey, _ = CONDITIONS[cond]
                steps = args.steps if kind == "deep" else (args.tabular_steps if prey == "scripted"
                                                           else args.tabular_learning_steps)
                print(f"== {cond} seed {seed}: {steps:,} env steps", flush=True)
                train_run(cond, seed, steps, max(1, steps // args.evals), args.eval_episodes, args.out)
    print(report(args.out, make_gifs=not args.no_gifs))


if __name__ == "__main__":
    main()
