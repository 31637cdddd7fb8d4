"""Soak test: does a long training run's resident memory stay flat?

Runs ``fastmarl train`` (default: MAPPO on simple_spread_v3, one thread, a budget it never reaches)
in a subprocess for ``--minutes``, samples its resident set size (``/proc/PID/status`` VmRSS, Linux)
every ``--interval`` seconds together with the env step of its last ``metrics.csv`` row, then stops
it (SIGINT). After ``--warmup`` minutes (imports, first evaluation and checkpoint, allocator warm-up)
the growth is ``final / at_warmup - 1`` and ``max / at_warmup - 1``; the run passes when both are
within ``--tolerance`` (default 5%).

    python benchmarks/soak.py --minutes 60 --json runs/soak.json
    python benchmarks/soak.py --minutes 5 -- --algo qmix --env simple_spread_v3

Arguments after ``--`` replace the default training arguments (``--threads 1`` and a run dir are
always added). Writes a CSV of the samples next to ``--json`` and prints a one-line verdict.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

DEFAULT = ["--algo", "mappo", "--env", "simple_spread_v3", "--total-steps", "1e12"]


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def last_step(metrics: Path) -> int:
    if not metrics.is_file():
        return 0
    with open(metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    return int(float(rows[-1]["step"])) if rows else 0


def summarise(samples: list[dict], warmup_s: float, tolerance: float) -> dict:
    """Growth of resident memory after ``warmup_s`` seconds; samples: dicts with t, rss_mb, step."""
    after = [s for s in samples if s["t"] >= warmup_s]
    if len(after) < 2:
        raise SystemExit(f"too few samples after the {warmup_s:.0f} s warm-up ({len(after)}): run longer")
    base, end, peak = after[0]["rss_mb"], after[-1]["rss_mb"], max(s["rss_mb"] for s in after)
    growth, peak_growth = end / base - 1, peak / base - 1
    return {"rss_at_warmup_mb": base, "rss_final_mb": end, "rss_max_mb": peak, "growth": growth,
            "max_growth": peak_growth, "steps_at_warmup": after[0]["step"], "steps_final": after[-1]["step"],
            "passed": bool(abs(growth) <= tolerance and peak_growth <= tolerance), "tolerance": tolerance}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=None, help="minutes (default: a tenth of --minutes, >= 1)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--json", type=Path, default=None)
    args, extra = ap.parse_known_args()
    extra = [x for x in extra if x != "--"] or DEFAULT
    if not sys.platform.startswith("linux"):
        raise SystemExit("soak.py reads /proc/PID/status: Linux only")
    if args.minutes <= 0 or args.interval <= 0:
        raise SystemExit("--minutes and --interval must be > 0")
    warmup = args.warmup if args.warmup is not None else max(1.0, args.minutes / 10)
    runs = Path(tempfile.mkdtemp(prefix="fastmarl_soak_"))
    cmd = [sys.executable, "-m", "fastmarl.cli", "train", *extra, "--threads", "1", "--runs-dir", str(runs),
           "--name", "soak", "--no-progress"]
    print(" ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples, t0 = [], time.perf_counter()
    try:
        while (t := time.perf_counter() - t0) < args.minutes * 60:
            if proc.poll() is not None:
                raise SystemExit(f"training ended after {t:.0f} s (rc {proc.returncode}):\n{proc.stderr.read()[-2000:]}")
            mb = rss_mb(proc.pid)
            if mb is not None:
                samples.append({"t": round(t, 1), "rss_mb": round(mb, 1), "step": last_step(runs / "soak" / "metrics.csv")})
                print(json.dumps(samples[-1]), flush=True)  # a soak cut short still leaves its samples
            time.sleep(args.interval)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    res = {"command": cmd, "minutes": args.minutes, "warmup_minutes": warmup, **summarise(samples, warmup * 60, args.tolerance),
           "machine": f"{platform.machine()} {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
           "python": platform.python_version(), "torch": metadata.version("torch"),
           "fastmarl": metadata.version("fastmarl")}
    print(f"resident memory after {warmup:.0f} min warm-up {res['rss_at_warmup_mb']:.0f} MB (step {res['steps_at_warmup']:,}); "
          f"after {args.minutes:.0f} min {res['rss_final_mb']:.0f} MB (step {res['steps_final']:,}), "
          f"max {res['rss_max_mb']:.0f} MB: growth {100 * res['growth']:+.1f}% (max {100 * res['max_growth']:+.1f}%), "
          f"{'within' if res['passed'] else 'OUTSIDE'} {100 * args.tolerance:.0f}%")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
        with open(args.json.with_suffix(".csv"), "w", newline="") as f:
            w = csv.DictWriter(f, ["t", "rss_mb", "step"])
            w.writeheader()
            w.writerows(samples)
    if not res["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
