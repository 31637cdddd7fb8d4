"""The summary of a sweep: one row per trial and, per grid point (the seeds pooled), the IQM and
mean of the final metric with stratified-bootstrap CIs (:func:`fastmarl.analysis.stats.iqm_ci`).

``summarize(result)`` -> a dict (written as ``summary.json``); ``format_summary`` -> Markdown
(``summary.md``, and what ``fastmarl sweep`` prints).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fastmarl.analysis.stats import iqm_ci
from fastmarl.train.sweep import SweepResult


def _point(params: dict[str, Any]) -> str:
    """A grid point without its seed: algo env [env kwargs] [grid keys]."""
    rest = {k: v for k, v in params.items() if k not in ("algo", "env", "env_kwargs", "seed")}
    text = f"{params.get('algo', '?')} {params.get('env', '?')}"
    if params.get("env_kwargs"):
        text += " " + " ".join(f"{k}={v}" for k, v in params["env_kwargs"].items())
    if rest:
        text += " " + " ".join(f"{k}={v}" for k, v in rest.items())
    return text


def summarize(result: SweepResult, reps: int = 5000) -> dict[str, Any]:
    """Trials, per-point aggregates of ``result.config.metric`` over the finished trials, and counts."""
    metric = result.config.metric
    rows = []
    for t in result.trials:
        rows.append({"trial": t.name, "point": _point(t.params), "seed": t.params.get("seed"), "status": t.status,
                     metric: t.metrics.get(metric), "steps": t.metrics.get("steps"), "time": t.metrics.get("time"),
                     "resumed": bool(t.metrics.get("resumed")), "run_dir": t.run_dir, "error_file": t.error_file})
    scores: dict[str, list[float]] = {}
    for r in rows:
        v = r[metric]
        if r["status"] == "finished" and isinstance(v, (int, float)) and math.isfinite(v):
            scores.setdefault(r["point"], []).append(float(v))
    groups = []
    if scores:
        agg = iqm_ci(scores, reps=reps)
        for point, vals in scores.items():
            groups.append({"point": point, "runs": len(vals), **agg[point]})
        groups.sort(key=lambda g: g["iqm"], reverse=result.config.mode == "max")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {"sweep_dir": str(result.sweep_dir), "metric": metric, "mode": result.config.mode, "counts": counts,
            "trials": rows, "groups": groups}


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown: the per-point aggregates (best first), then every trial."""
    metric = summary["metric"]
    lines = [f"# Sweep {summary['sweep_dir']}", "",
             "trials: " + ", ".join(f"{n} {k}" for k, n in sorted(summary["counts"].items())), ""]
    if summary["groups"]:
        lines += [f"## {metric} per grid point (seeds pooled; IQM and mean with 95% stratified-bootstrap CIs)", "",
                  f"| grid point | runs | IQM {metric} | 95% CI | mean | 95% CI |", "|---|---|---|---|---|---|"]
        for g in summary["groups"]:
            lines.append(f"| {g['point']} | {g['runs']} | {g['iqm']:.3f} | [{g['iqm_ci'][0]:.3f}, {g['iqm_ci'][1]:.3f}] "
                         f"| {g['mean']:.3f} | [{g['mean_ci'][0]:.3f}, {g['mean_ci'][1]:.3f}] |")
        lines.append("")
    lines += ["## Trials", "", f"| trial | status | {metric} | steps | time (s) | resumed | run dir or traceback |",
              "|---|---|---|---|---|---|---|"]
    for r in summary["trials"]:
        where = r["error_file"] if r["status"] == "failed" else r["run_dir"] or "-"
        lines.append(f"| {r['trial']} | {r['status']} | {_num(r[metric])} | {_num(r['steps'])} | {_num(r['time'])} "
                     f"| {'yes' if r['resumed'] else 'no'} | {where} |")
    return "\n".join(lines) + "\n"


def write_summary(summary: dict[str, Any], folder: str | Path) -> tuple[Path, Path]:
    """summary.json and summary.md in ``folder`` (the sweep's folder)."""
    folder = Path(folder)
    js, md = folder / "summary.json", folder / "summary.md"
    js.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    md.write_text(format_summary(summary))
    return js, md
