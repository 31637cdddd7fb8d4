"""Self-play with an opponent pool on the competitive envs: ratings over training and exploitability.

For one env per invocation (one training process at a time, 1 thread)::

    python experiments/selfplay.py --env simple_tag_v3
    python experiments/selfplay.py --env pursuit_evasion_v0
    python experiments/selfplay.py --env jammer_v0          # also swarm_defense_v0, simple_adversary_v3, influence_v0
    python experiments/selfplay.py --env simple_tag_v3 --report-only   # rebuild its doc section from the run

1. trains both groups from scratch with :func:`fastmarl.train.selfplay.train`
   (``schedule="alternate"``: phases in which one group learns with MAPPO while
   the other plays snapshots drawn uniformly from its newest ``pool_size``);
2. plays every kept snapshot of one side against every kept snapshot of the
   other, plus uniform random play and the env's scripted baseline (where it has
   one; for simple_tag the scripted chaser / evader of :mod:`fastmarl.envs.scripted_tag`),
   and fits Elo ratings (:func:`~fastmarl.analysis.competitive.evaluate_matrix`);
3. for each side, freezes its final snapshot and trains a fresh MAPPO best
   response of the other side against it for the preset's ``br_steps`` env steps (times ``--scale``;
   :func:`~fastmarl.analysis.competitive.exploitability`);
4. writes ``docs/figures/competitive_<env>.png`` (ratings vs training step) and
   replaces this env's section of ``docs/competitive.md`` (other envs' sections are kept).

The run directory is ``runs/selfplay/<env>_s<seed>`` (deleted and redone when it exists).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import torch

from fastmarl.analysis.competitive import evaluate_matrix, exploitability
from fastmarl.config import PPOConfig
from fastmarl.config.competitive import CompetitiveConfig
from fastmarl.train.selfplay import train

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "competitive.md"
FIGURES = ROOT / "docs" / "figures"

# per env: kwargs and budget (about 3-5 minutes of 1-thread CPU for training, matrix and both best responses)
PRESETS: dict[str, dict] = {
    "simple_tag_v3": dict(env_kwargs={}, total_steps=2_000_000, phase_steps=250_000, br_steps=500_000),
    "pursuit_evasion_v0": dict(env_kwargs={}, total_steps=2_000_000, phase_steps=250_000, br_steps=500_000),
    "simple_adversary_v3": dict(env_kwargs={}, total_steps=2_000_000, phase_steps=250_000, br_steps=500_000),
    "jammer_v0": dict(env_kwargs={}, total_steps=1_000_000, phase_steps=125_000, br_steps=250_000),
    "swarm_defense_v0": dict(env_kwargs={}, total_steps=1_000_000, phase_steps=125_000, br_steps=250_000),
    "influence_v0": dict(env_kwargs={}, total_steps=1_000_000, phase_steps=125_000, br_steps=250_000),
}

HEADER = """# Competitive training: self-play pools, Elo ratings, exploitability

`fastmarl.train.selfplay` trains each group of a competitive env with its own learner (or keeps it
frozen, scripted or random). These experiments train *both* sides from scratch with MAPPO, in the
`alternate` schedule: training is split into phases; in each phase one side learns while the other side
plays snapshots drawn uniformly from the newest 10 snapshots of its pool, redrawn every iteration
(200 envs x 25 steps). A snapshot of the learning side is saved every `phase_steps / 2` env steps
and at the end of each of its phases.

How to read the numbers:

- **Evaluation matrix.** Every kept snapshot of side A (up to 12, evenly spaced) plays every kept
  snapshot of side B, plus uniformly random play and the env's scripted baseline, on the same
  100 start states (stochastic policies). Returns are per agent (the summed reward of an agent over the
  episode, averaged over the group's agents).
- **Score and Elo.** Returns are not wins, so a cell's score for A is the percentile rank of
  A's advantage `return_A - return_B` among all cells of the matrix, per start state (0: the worst cell for
  A, 1: the best; ties count half), averaged over the 100 start states; B's score is one minus A's.
  Elo ratings are the maximum-likelihood logistic (Bradley-Terry) fit to these scores (100 games per cell,
  one virtual draw per player against a 1500 reference), reported with mean 1500. Ratings compare entries
  *within* a side; the offset between the two sides means nothing (the roles are asymmetric).
- **Exploitability.** Each side's final snapshot is frozen, and a fresh MAPPO learner for the other side
  trains against it alone. `gap` is how much more that best response earns against the frozen policy than
  the self-play run's final snapshot of that side does (per-agent return, same 200 start states; ± is
  the standard error of the paired difference). A large positive gap means the frozen policy has a
  weakness that self-play's opponents did not exploit.

Absolute wall times were measured on a shared 2-core machine with other jobs running; they are noisy.

Reproduce one env: `python experiments/selfplay.py --env <env_id>` (one command per env; each
rewrites only its own section below).
"""


def _refs(env_id: str, env_kwargs: dict) -> dict:
    """Extra scripted reference policies for the matrix (simple_tag has no baseline_policy in its module)."""
    if env_id != "simple_tag_v3":
        return {}
    try:
        from fastmarl.envs.scripted_tag import TagChaserScripted, TagPreyScripted
    except ImportError:
        return {}
    import fastmarl

    spec = fastmarl.make(env_id, num_envs=1, **env_kwargs).spec
    return {"adversary": {"scripted chaser": TagChaserScripted(spec)},
            "agent": {"scripted evader": TagPreyScripted(spec)}}


def run(env_id: str, seed: int, runs_dir: Path, scale: float) -> dict:
    p = PRESETS[env_id]
    total, phase, br = (int(p[k] * scale) for k in ("total_steps", "phase_steps", "br_steps"))
    name = f"{env_id}_s{seed}"
    if (runs_dir / name).exists():
        shutil.rmtree(runs_dir / name)
    cfg = CompetitiveConfig(env=env_id, env_kwargs=p["env_kwargs"], total_steps=total, num_envs=200, seed=seed,
                            schedule="alternate", phase_steps=phase, snapshot_interval=phase // 2, pool_size=10,
                            opponent_sampling="uniform", eval_interval=phase, eval_episodes=100,
                            matrix_episodes=0, runs_dir=str(runs_dir), name=name, threads=1, ppo=PPOConfig())
    t0 = time.perf_counter()
    res = train(cfg)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    matrix = evaluate_matrix(res.run_dir, episodes=100, extra=_refs(env_id, p["env_kwargs"]), progress=True)
    t_matrix = time.perf_counter() - t0
    sides = matrix["sides"]
    expl = {}
    t0 = time.perf_counter()
    for g in sides:
        expl[g] = exploitability(res.run_dir, g, br, episodes=200, progress=True)
    t_br = time.perf_counter() - t0
    evals = _csv(res.run_dir / "eval.csv")
    out = {"env": env_id, "seed": seed, "env_kwargs": p["env_kwargs"], "total_steps": res.global_step,
           "phase_steps": phase, "br_steps": br,
           "seconds": {"train": t_train, "matrix": t_matrix, "best_response": t_br},
           "sides": sides, "labels": matrix["labels"], "steps": matrix["steps"],
           "ratings": {g: {k: float(v) for k, v in r.items()} for g, r in matrix["ratings"].items()},
           "return_a": matrix["return_a"].tolist(), "return_b": matrix["return_b"].tolist(),
           "exploitability": expl, "eval": evals, "run_dir": str(res.run_dir)}
    (res.run_dir / "experiment.json").write_text(json.dumps(out, indent=2))
    return out


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def section(r: dict) -> str:
    env, (a, b) = r["env"], r["sides"]
    lines = [f"<!-- env:{env} -->", f"## {env}", ""]
    kw = ", ".join(f"{k}={v}" for k, v in r["env_kwargs"].items()) or "default kwargs"
    s = r["seconds"]
    lines += [f"`python experiments/selfplay.py --env {env}` ({kw}, seed {r['seed']}): {r['total_steps']:,} env "
              f"steps of alternating self-play (phases of {r['phase_steps']:,}), both sides MAPPO. Wall time: "
              f"training {s['train']:.0f} s, matrix {s['matrix']:.0f} s, two best responses of "
              f"{r['br_steps']:,} steps {s['best_response']:.0f} s.", "",
              f"![ratings vs training step on {env}](figures/competitive_{env}.png)", ""]
    # ratings table: first / last snapshot and the references per side
    lines += ["| side | first snapshot | last snapshot | best snapshot (step) | random | baseline |",
              "|---|---|---|---|---|---|"]
    for g, labels, steps in zip(r["sides"], r["labels"], r["steps"]):
        rat = r["ratings"][g]
        snaps = [(lab, st) for lab, st in zip(labels, steps) if not (isinstance(st, float) and math.isnan(st))]
        best = max(snaps, key=lambda x: rat[x[0]])
        refs = [lab for lab in labels if lab not in dict(snaps)]
        base = [lab for lab in refs if lab != "random"]
        base_txt = ", ".join(f"{rat[lab]:.0f} ({lab})" for lab in base) or "-"
        lines.append(f"| {g} | {rat[snaps[0][0]]:.0f} | {rat[snaps[-1][0]]:.0f} | {rat[best[0]]:.0f} "
                     f"({int(best[1]):,}) | {rat['random']:.0f} | {base_txt} |")
    lines += ["", "Returns in the matrix (per agent, mean of 100 episodes), last snapshots and references:", ""]
    la, lb = r["labels"]
    ra, rb = r["return_a"], r["return_b"]
    last_a = max(i for i, st in enumerate(r["steps"][0]) if not math.isnan(st))
    last_b = max(i for i, st in enumerate(r["steps"][1]) if not math.isnan(st))
    first = 0
    rows = [(first, first), (last_a, last_b)]
    rows += [(last_a, j) for j, lab in enumerate(lb) if math.isnan(r["steps"][1][j])]
    rows += [(i, last_b) for i, lab in enumerate(la) if math.isnan(r["steps"][0][i])]
    lines += [f"| {a} | {b} | return {a} | return {b} |", "|---|---|---|---|"]
    for i, j in rows:
        lines.append(f"| {la[i]} | {lb[j]} | {ra[i][j]:.2f} | {rb[i][j]:.2f} |")
    lines += ["", "Exploitability of the final snapshots (200 episodes):", "",
              "| frozen side (step) | responder | frozen side's return vs final responder | ... vs best response "
              "| responder's return, final | ... best response | gap |", "|---|---|---|---|---|---|---|"]
    for g, e in r["exploitability"].items():
        for resp in [x for x in r["sides"] if x != g]:
            lines.append(f"| {g} ({e['snapshot_step']:,}) | {resp} | {e[f'return/{g}_vs_final']:.2f} | "
                         f"{e[f'return/{g}_vs_best_response']:.2f} | {e[f'return_final/{resp}']:.2f} | "
                         f"{e[f'return_best_response/{resp}']:.2f} | {e[f'gap/{resp}']:+.2f} ± "
                         f"{e[f'gap_stderr/{resp}']:.2f} |")
    lines += ["", "What the data show (computed from the numbers above):", ""] + [f"- {t}" for t in findings(r)]
    lines += ["", f"<!-- /env:{env} -->", ""]
    return "\n".join(lines)


def findings(r: dict) -> list[str]:
    out = []
    for g, labels, steps in zip(r["sides"], r["labels"], r["steps"]):
        rat = r["ratings"][g]
        snaps = [lab for lab, st in zip(labels, steps) if not math.isnan(st)]
        diff = rat[snaps[-1]] - rat[snaps[0]]
        best = max(snaps, key=rat.get)
        mono = sum(rat[y] >= rat[x] for x, y in zip(snaps, snaps[1:]))
        txt = (f"{g}: the last snapshot is rated {diff:+.0f} Elo against the first; the best-rated snapshot is "
               f"'{best}'; {mono} of {len(snaps) - 1} consecutive snapshot pairs go up")
        above = [lab for lab in labels if lab not in snaps and rat[snaps[-1]] > rat[lab]]
        below = [lab for lab in labels if lab not in snaps and rat[snaps[-1]] <= rat[lab]]
        if above:
            txt += f"; the last snapshot is rated above {', '.join(above)}"
        if below:
            txt += f"; it is not rated above {', '.join(below)}"
        out.append(txt + ".")
    first, last = r["eval"][0], r["eval"][-1]
    for g in r["sides"]:
        key = f"return_vs_random/{g}"
        if key in first:
            out.append(f"{g} against uniformly random opponents (100 evaluation episodes): return "
                       f"{float(first[key]):.2f} at step {int(float(first['step'])):,}, "
                       f"{float(last[key]):.2f} at step {int(float(last['step'])):,}.")
    for g, e in r["exploitability"].items():
        for resp in [x for x in r["sides"] if x != g]:
            gap, se = e[f"gap/{resp}"], e[f"gap_stderr/{resp}"]
            verdict = ("more than the final self-play snapshot" if gap > 2 * se else
                       "less than the final self-play snapshot" if gap < -2 * se else
                       "about as much as the final self-play snapshot (|gap| < 2 standard errors)")
            out.append(f"A fresh {resp} trained {r['br_steps']:,} steps against the frozen {g} earns {verdict}: "
                       f"gap {gap:+.2f} ± {se:.2f}.")
    return out


def write_doc(r: dict) -> None:
    text = DOC.read_text() if DOC.is_file() else HEADER
    start, end = f"<!-- env:{r['env']} -->", f"<!-- /env:{r['env']} -->"
    new = section(r)
    if start in text:
        i, j = text.index(start), text.index(end) + len(end) + 1
        text = text[:i] + new + text[j:]
    else:
        text = text.rstrip("\n") + "\n\n" + new
    DOC.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True, choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs-dir", default=str(ROOT / "runs" / "selfplay"))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every step budget (e.g. 0.05 for a smoke run)")
    ap.add_argument("--no-doc", action="store_true", help="do not touch docs/")
    ap.add_argument("--report-only", action="store_true", help="rebuild the doc section from the run's experiment.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.report_only:
        r = json.loads((Path(args.runs_dir) / f"{args.env}_s{args.seed}" / "experiment.json").read_text())
    else:
        r = run(args.env, args.seed, Path(args.runs_dir), args.scale)
    if not args.no_doc:
        FIGURES.mkdir(parents=True, exist_ok=True)
        fig = FIGURES / f"competitive_{args.env}.png"
        shutil.copyfile(Path(r["run_dir"]) / "ratings.png", fig)
        assert fig.stat().st_size < 200_000, f"{fig} is {fig.stat().st_size} bytes"
        write_doc(r)
        print(f"wrote {DOC}")
    print("\n".join(findings(r)))


if __name__ == "__main__":
    main()
