"""The run directory: everything a run needs to be understood, resumed and evaluated.

``runs/<name>/``:

- ``config.json``: the resolved TrainConfig, or QConfig for value-based runs (its
  ``"algo"`` tells which; ``RunDir.read_config`` reads either back);
- ``meta.json``: versions, git revision, host, command line, start time;
- ``metrics.csv``: one row per training iteration (step, wall time, steps/s,
  return, losses, ...); ``eval.csv``: one row per evaluation;
- ``tb/``: the same as TensorBoard events;
- ``checkpoints/``: see :mod:`fastmarl.train.checkpoint`;
- ``learning_curve.png`` (with the random and scripted reference returns of ``references.json``)
  and ``episode.gif``;
- ``marl_eval.json``: the evaluations in marl-eval's layout (:mod:`fastmarl.train.marl_eval`).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fastmarl.config import ConfigError, RunConfig, config_from_saved
from fastmarl.train.checkpoint import atomic_write_text, temporary_name
from fastmarl.version import __version__


def default_run_name(cfg: RunConfig) -> str:
    env = cfg.env.replace(":", "-")  # pz:mpe2.simple_spread_v3 -> a portable folder name
    return f"{env}__{cfg.algo}__s{cfg.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def git_revision() -> dict[str, Any]:
    """Commit and dirty flag of the fastmarl source tree (None outside a git checkout)."""
    src = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=5)
        return {"commit": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def versions() -> dict[str, str]:
    import numpy
    import torch

    out = {"python": platform.python_version(), "fastmarl": __version__, "torch": torch.__version__,
           "numpy": numpy.__version__}
    for mod in ("gymnasium", "pettingzoo", "safetensors"):
        try:
            out[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    return out


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    metrics_csv = property(lambda self: self.path / "metrics.csv")
    eval_csv = property(lambda self: self.path / "eval.csv")
    curve_png = property(lambda self: self.path / "learning_curve.png")
    gif = property(lambda self: self.path / "episode.gif")

    @classmethod
    def create(cls, cfg: RunConfig) -> "RunDir":
        name = cfg.name or default_run_name(cfg)
        path = Path(cfg.runs_dir) / name
        if path.exists() and any(path.iterdir()):
            command = "selfplay" if cfg.algo == "selfplay" else "train"
            raise ConfigError(f"run directory {path} already exists; resume it with `fastmarl {command} --resume "
                              f"{path}` or choose another --name")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        cfg.name = name
        run.write_config(cfg)
        meta = {"versions": versions(), "git": git_revision(), "host": socket.gethostname(),
                "platform": platform.platform(), "argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seed": cfg.seed}
        atomic_write_text(path / "meta.json", json.dumps(meta, indent=2) + "\n")
        return run

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        run = cls(path)
        if not run.config_path.is_file():
            raise ConfigError(f"{path} is not a run directory (no config.json)")
        return run

    def read_config(self) -> RunConfig:
        """The saved config, as the config class of its algorithm (``fastmarl.config.config_class``)."""
        d = json.loads(self.config_path.read_text())
        if isinstance(d, dict) and d.get("kind") == "competitive":
            raise ConfigError(f"{self.path} is a competitive (self-play) run: its policies are snapshots in its pool; "
                              f"use fastmarl.analysis.competitive (evaluate_matrix, exploitability), a frozen group pointing at "
                              f"a snapshot, or `fastmarl selfplay --resume {self.path}` instead of "
                              f"`fastmarl eval/render/train --resume`")
        return config_from_saved(d)

    def write_config(self, cfg: RunConfig) -> None:
        atomic_write_text(self.config_path, json.dumps(cfg.to_dict(), indent=2) + "\n")


class CSVLog:
    """A CSV file whose columns are the union of the keys logged so far."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] = []
        if path.is_file():
            with open(path, newline="") as f:
                self.columns = next(csv.reader(f), [])

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def write(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.columns]
        if new or not self.path.is_file():
            old = self.rows()
            self.columns += new
            self._rewrite(old)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: _fmt(v) for k, v in row.items()})

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (they are logged again by a resumed run)."""
        if self.path.is_file():
            self._rewrite([r for r in self.rows() if float(r.get("step") or 0) <= step])

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        tmp = temporary_name(self.path)
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


class Logger:
    """metrics.csv / eval.csv plus TensorBoard (imported only when used)."""

    def __init__(self, run: RunDir, tensorboard: bool, resume_step: int | None = None):
        self.train_csv, self.eval_csv = CSVLog(run.metrics_csv), CSVLog(run.eval_csv)
        if resume_step is not None:
            self.train_csv.truncate_after(resume_step)
            self.eval_csv.truncate_after(resume_step)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run.path / "tb"), purge_step=resume_step + 1 if resume_step else None)

    def log(self, row: dict[str, Any], kind: str = "train") -> None:
        (self.train_csv if kind == "train" else self.eval_csv).write(row)
        if self.tb is not None:
            step = int(row["step"])
            for k, v in row.items():
                if k not in ("step", "iteration") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def plot_learning_curve(run: RunDir, title: str = "",
                        references: dict[str, dict[str, float]] | None = None) -> Path | None:
    """learning_curve.png: training return and evaluation returns vs env steps and vs wall time (one
    line per group on a competitive env, whose rows have per-group returns only), and a dotted
    horizontal line per reference policy (``references``: name -> its headline returns, e.g.
    ``{"random": {"return": -27.1}, "scripted": {"return": -8.0}}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = CSVLog(run.metrics_csv).rows()
    evals = CSVLog(run.eval_csv).rows()
    if not train and not evals:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, x in zip(axes, ("step", "time")):
        for rows, base, label, style in [(train, "return", "train (stochastic)", "-"),
                                         (evals, "return_det", "eval deterministic", "o-"),
                                         (evals, "return", "eval", "o-"),  # self-play's own evaluation row
                                         (evals, "return_stoch", "eval stochastic", "s--")]:
            columns = rows[0].keys() if rows else ()
            keys = [base] if base in columns else [k for k in columns if k.startswith(base + "/")]
            for key in keys:
                pts = [(float(r[x]), float(r[key])) for r in rows if r.get(key) not in (None, "") and r.get(x)]
                if pts:
                    group = key.partition("/")[2]
                    ax.plot(*zip(*pts), style, label=f"{label} {group}".rstrip(), markersize=4)
        for (name, rets), color in zip((references or {}).items(), ("tab:gray", "black", "tab:purple")):
            for key, value in rets.items():
                group = key.partition("/")[2]
                ax.axhline(value, color=color, linestyle=":", linewidth=1.5,
                           label=f"{name} {group + ' ' if group else ''}{value:.2f}")
        ax.set_xlabel("env steps" if x == "step" else "wall time (s)")
        ax.set_ylabel("return per agent")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = temporary_name(run.curve_png)
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, run.curve_png)
    return run.curve_png


def plot_returns(run: RunDir, title: str = "") -> Path | None:
    """returns.png: per-group training return vs env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = CSVLog(run.metrics_csv).rows()
    keys = [k for k in (rows[0] if rows else {}) if k.startswith("return")]
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for k in keys:
        pts = [(float(r["step"]), float(r[k])) for r in rows if r.get(k) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), label=k)
    ax.set_xlabel("env steps")
    ax.set_ylabel("training return per agent")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out = run.path / "returns.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
