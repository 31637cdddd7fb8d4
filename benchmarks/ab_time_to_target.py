"""Side by side: MAPPO's wall time to a return on simple_spread_v3 for two fastmarl source trees.

Runs ``experiments/mappo_spread_time_to_target.py`` (the default ``fastmarl train --algo mappo``
command, clock started before the process) once per seed and tree, interleaved A, B, B, A, A, B, ...
so that drift in the machine's load hits both trees alike; each run imports the fastmarl of its tree
(``PYTHONPATH``), with the same Python and packages. Reports per-seed times to the target and the
ratio B / A of the means (< 1: B is faster).

    git worktree add /tmp/fastmarl-old 3ee1657
    python benchmarks/ab_time_to_target.py --a /tmp/fastmarl-old --b . --seeds 0 1 2 --json runs/ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "mappo_spread_time_to_target.py"


def git_rev(tree: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True)
    return out.stdout.strip() or "?"


def run(tree: Path, seed: int, target: float, out_dir: Path, extra: list[str]) -> dict:
    out = out_dir / f"{tree.name}_{seed}.json"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(SCRIPT), "--seeds", str(seed), "--target", str(target), "--json", str(out),
           "--runs-dir", str(out_dir / f"runs_{tree.name}_{seed}"), "--", *extra]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    (res,) = json.loads(out.read_text())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", type=Path, required=True, help="source tree A (e.g. a worktree of the old main)")
    ap.add_argument("--b", type=Path, default=ROOT, help="source tree B (default: this one)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--target", type=float, default=-16.0)
    ap.add_argument("--json", type=Path, default=None)
    args, extra = ap.parse_known_args()
    extra = [x for x in extra if x != "--"]
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    if trees["A"].name == trees["B"].name:
        raise SystemExit("the two trees need different folder names (they name the result files)")
    out_dir = Path(tempfile.mkdtemp(prefix="fastmarl_ab_"))
    print(f"A = {trees['A']} ({git_rev(trees['A'])}), B = {trees['B']} ({git_rev(trees['B'])}); "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for i, seed in enumerate(args.seeds):
        for label in ("AB" if i % 2 == 0 else "BA"):
            res = run(trees[label], seed, args.target, out_dir, extra)
            reached = res["reached"]
            rows.append({"tree": label, "seed": seed, "time_to_target_s": reached["wall_s"] if reached else None,
                         "step": reached["step"] if reached else None, "total_wall_s": res["total_wall_s"]})
            print(f"{label} seed {seed}: " + (f"{reached['wall_s']} s (step {reached['step']:,})" if reached
                                              else "did not reach the target") +
                  f", whole run {res['total_wall_s']} s, load {os.getloadavg()[0]:.2f}", flush=True)
    summary = {}
    for label in "AB":
        times = [r["time_to_target_s"] for r in rows if r["tree"] == label]
        summary[label] = {"mean_s": sum(times) / len(times) if None not in times else None, "per_seed": times}
    if summary["A"]["mean_s"] and summary["B"]["mean_s"]:
        summary["ratio_b_over_a"] = summary["B"]["mean_s"] / summary["A"]["mean_s"]
        print(f"mean time to {args.target}: A {summary['A']['mean_s']:.1f} s, B {summary['B']['mean_s']:.1f} s, "
              f"B / A = {summary['ratio_b_over_a']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"a": str(trees["A"]), "a_rev": git_rev(trees["A"]), "b": str(trees["B"]),
                                         "b_rev": git_rev(trees["B"]), "rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
