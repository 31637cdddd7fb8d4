"""fastmarl vs mpe2, VMAS and JaxMARL: env-steps/s side by side, in one run.

Usage (after ``bash benchmarks/setup_peers.sh`` once)::

    python benchmarks/bench_envs.py                       # full grid, ~10 min on 2 cores
    python benchmarks/bench_envs.py --num-envs 1 64 --threads 1 --seconds 1   # quick look

Every measurement runs in its own subprocess pinned to ``threads`` cores
(fastmarl through ``python -m fastmarl.bench envs --json``, the peers through
``benchmarks/peers/peer_bench.py`` in the peers' virtualenv). The libraries are
interleaved per configuration, so drift of a shared machine hits all of them
alike; the table reports ratios fastmarl / peer for each configuration.
Results (JSON lines and a markdown table) go to ``runs/bench/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_PY = ROOT / "benchmarks" / ".venv-peers" / "bin" / "python"
PEER_SCRIPT = ROOT / "benchmarks" / "peers" / "peer_bench.py"
FM_ENV = {"simple_spread": "simple_spread_v3", "simple_tag": "simple_tag_v3"}


def run_json(cmd: list[str], timeout: float) -> dict | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        print(f"  timeout: {' '.join(cmd)}", file=sys.stderr)
        return None
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not lines:
        print(f"  failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def fastmarl_cmd(env: str, n: int, threads: int, mode: str, seconds: float, device: str) -> list[str]:
    return [sys.executable, "-m", "fastmarl.bench", "envs", "--json", "--envs", FM_ENV[env], "--num-envs", str(n),
            "--threads", str(threads), "--modes", mode, "--seconds", str(seconds), "--device", device]


def peer_cmd(lib: str, env: str, n: int, threads: int, seconds: float) -> list[str]:
    return [str(PEER_PY), str(PEER_SCRIPT), "--lib", lib, "--env", env, "--num-envs", str(n), "--threads",
            str(threads), "--seconds", str(seconds)]


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores visible, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["simple_spread", "simple_tag"], choices=list(FM_ENV))
    p.add_argument("--num-envs", nargs="+", type=int, default=[1, 64, 1024, 8192])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--peers", nargs="+", default=["mpe2", "vmas", "jaxmarl"])
    p.add_argument("--modes", nargs="+", default=["eager", "compile", "aot"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--mpe2-max-envs", type=int, default=1, help="run mpe2 (one Python env per copy) up to this num_envs")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench"))
    args = p.parse_args()
    have_peers = PEER_PY.exists()
    if not have_peers:
        print("peers' virtualenv not found: run `bash benchmarks/setup_peers.sh` first; measuring fastmarl only",
              file=sys.stderr)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    jl = out_dir / f"envs-{stamp}.jsonl"
    results: list[dict] = []
    timeout = 120 + 10 * args.seconds
    for env in args.envs:
        for threads in args.threads:
            for n in args.num_envs:
                cmds = [(f"fastmarl-{m}", fastmarl_cmd(env, n, threads, m, args.seconds, args.device)) for m in args.modes]
                if have_peers and args.device == "cpu":
                    for lib in args.peers:
                        if lib == "mpe2" and n > args.mpe2_max_envs:
                            continue
                        cmds.append((lib, peer_cmd(lib, env, n, threads, args.seconds)))
                for label, cmd in cmds:
                    r = run_json(cmd, timeout)
                    if r is None:
                        continue
                    r.update(label=label, bench_env=env)
                    results.append(r)
                    with jl.open("a") as f:
                        f.write(json.dumps(r) + "\n")
                    print(f"{env:14s} threads={threads} num_envs={n:5d} {label:17s} {r['steps_per_s']:>14,.0f} env-steps/s",
                          flush=True)
    md = render_markdown(results, args)
    (out_dir / f"envs-{stamp}.md").write_text(md)
    print("\n" + md)
    print(f"written: {jl} and {out_dir / f'envs-{stamp}.md'}")
    return 0


def render_markdown(results: list[dict], args) -> str:
    by = {(r["bench_env"], r["threads"], r["num_envs"], r["label"]): r for r in results}
    labels = [f"fastmarl-{m}" for m in args.modes] + [p for p in args.peers]
    versions = {}
    for r in results:
        versions.setdefault(r["label"].split("-")[0], r.get("version", "?"))
    lines = [f"Machine: {machine_info()}. Date: {dt.date.today().isoformat()}. Device: {args.device}.",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".", "",
             "| env | threads | num_envs | " + " | ".join(labels) + " | best fastmarl / VMAS | / JaxMARL | / mpe2 |",
             "|---|---|---|" + "---|" * (len(labels) + 3)]
    for env in args.envs:
        for threads in args.threads:
            for n in args.num_envs:
                cells, best = [], None
                for lab in labels:
                    r = by.get((env, threads, n, lab))
                    cells.append(f"{r['steps_per_s']:,.0f}" if r else "-")
                    if r and lab.startswith("fastmarl"):
                        best = max(best or 0.0, r["steps_per_s"])
                ratios = []
                for peer in ("vmas", "jaxmarl", "mpe2"):
                    r = by.get((env, threads, n, peer))
                    ratios.append(f"{best / r['steps_per_s']:.2f}x" if (r and best) else "-")
                lines.append(f"| {env} | {threads} | {n} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
