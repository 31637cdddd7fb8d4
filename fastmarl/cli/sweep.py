"""``fastmarl sweep``: a grid of training runs (or a search) as Ray Tune trials, then a summary.

``fastmarl sweep --algos mappo ippo --envs simple_spread_v3 --seeds 0 1 2 --set total_steps=2e5``
``fastmarl sweep --config grid.toml [--address auto]`` (the TOML holds SweepConfig's keys; flags override it)
``fastmarl sweep --grid ppo.lr=1e-3,3e-3 --env-kwargs N=3 --env-kwargs N=5 ...`` (two grid axes)
``fastmarl sweep --search optuna --space ppo.lr="loguniform(1e-4,1e-2)" --num-samples 16 --early-stop``
``fastmarl sweep --resume --name NAME`` (continue a sweep: finished trials are not rerun)

See :mod:`fastmarl.train.sweep` (what a trial does) and :mod:`fastmarl.config.sweep` (the keys).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

import tomllib

from fastmarl.analysis.sweep import format_summary, summarize, write_summary
from fastmarl.config import ConfigError, parse_env_kwargs
from fastmarl.config.sweep import SweepConfig
from fastmarl.train.sweep import run_sweep


def _value(text: str) -> Any:
    try:
        v = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return int(v) if isinstance(v, float) and v.is_integer() and "e" in text.lower() else v  # 2e5 -> 200000


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} takes KEY=VALUE items, got {item!r}")
        out[key] = raw
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastmarl sweep", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Each trial writes an ordinary run directory: STORAGE/NAME/runs/<trial>.")
    a = p.add_argument
    a("--config", metavar="TOML", help="a TOML file with the sweep's keys (algos, envs, seeds, [grid], [set], ...)")
    a("--algos", nargs="+", help="algorithms (default: mappo)")
    a("--envs", nargs="+", help="env ids or pz:<module> (default: simple_spread_v3)")
    a("--env-kwargs", nargs="+", action="append", metavar="KEY=VALUE",
      help="one set of env kwargs; repeat the flag for a grid axis of sets")
    a("--seeds", nargs="+", type=int, help="seeds (default: 0)")
    a("--grid", nargs="+", metavar="KEY=V1,V2", default=[], help="a grid axis per key, e.g. ppo.lr=1e-3,3e-3")
    a("--set", nargs="+", metavar="KEY=VALUE", default=[], help="a config value for every trial, e.g. total_steps=2e5")
    a("--name", help="the sweep's folder under --storage (default: sweep)")
    a("--storage", help="where the sweep writes (default: runs/sweeps)")
    a("--address", help="join a Ray cluster: auto or HOST:PORT (default: start Ray on this machine)")
    a("--cpus-per-trial", type=float)
    a("--gpus-per-trial", type=float)
    a("--max-concurrent", type=int)
    a("--max-failures", type=int, help="restarts of a trial whose worker dies (default 3)")
    a("--search", choices=["grid", "optuna", "random"])
    a("--space", nargs="+", metavar="KEY=DIST", default=[], help='search distributions: ppo.lr="loguniform(1e-4,1e-2)"')
    a("--metric", help="metric to optimise / compare (default: return_det)")
    a("--mode", choices=["max", "min"])
    a("--num-samples", type=int, help="trials of a search")
    a("--early-stop", action="store_true", default=None, help="stop bad trials early (ASHA on --metric)")
    a("--grace-evals", type=int)
    a("--resume", action="store_true", help="continue the sweep --name in --storage (its saved sweep.json)")
    a("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all of this machine)")
    return p


def sweep_config(args: argparse.Namespace) -> SweepConfig:
    """The SweepConfig of a TOML file (if any) with the flags applied over it."""
    d: dict[str, Any] = {}
    if args.config:
        try:
            d = tomllib.loads(Path(args.config).read_text())
        except OSError as e:
            raise ConfigError(f"--config {args.config}: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"--config {args.config}: not valid TOML ({e})") from None
    for key in ("algos", "envs", "seeds", "name", "storage", "address", "cpus_per_trial", "gpus_per_trial",
                "max_concurrent", "max_failures", "search", "metric", "mode", "num_samples", "early_stop",
                "grace_evals"):
        v = getattr(args, key)
        if v is not None:
            d[key] = v
    if args.env_kwargs:
        d["env_kwargs"] = [parse_env_kwargs(items) for items in args.env_kwargs]
    grid = dict(d.get("grid", {}))
    for key, raw in _pairs(args.grid, "--grid").items():
        v = _value(raw)
        grid[key] = v if isinstance(v, list) else [_value(x) for x in raw.split(",")]
    if grid:
        d["grid"] = grid
    fixed = dict(d.get("set", {}))
    fixed.update({k: _value(v) for k, v in _pairs(args.set, "--set").items()})
    if fixed:
        d["set"] = fixed
    space = dict(d.get("space", {}))
    space.update(_pairs(args.space, "--space"))
    if space:
        d["space"] = space
    return SweepConfig.from_dict(d)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        sc = sweep_config(args)
        result = run_sweep(sc, resume=args.resume, num_cpus=args.num_cpus)
    except (ConfigError, ImportError) as e:
        print(f"fastmarl sweep: error: {e}", file=sys.stderr)
        return 2
    summary = summarize(result)
    write_summary(summary, result.sweep_dir)
    print(format_summary(summary))
    failed = [t for t in result.trials if t.status == "failed"]
    for t in failed:
        print(f"fastmarl sweep: trial {t.name} failed; traceback: {t.error_file}", file=sys.stderr)
    return 1 if failed or any(t.status == "unfinished" for t in result.trials) else 0
