"""``fastmarl train | eval | render``: tyro over the typed configs of fastmarl.config.

``fastmarl train --algo mappo --env simple_spread_v3 --total-steps 2e6``
``fastmarl train --algo qmix --env simple_spread_v3 --total-steps 2e6``
``fastmarl train --algo qmix --help`` (that algorithm's own options)
``fastmarl train --resume runs/NAME [--total-steps 4e6]`` (any algorithm's run)
``fastmarl eval runs/NAME [--episodes 100]``
``fastmarl render runs/NAME --out episode.gif``

``--algo`` is one choice among every algorithm (``TRAIN_ALGOS``); it selects the
config class that the rest of the command line is parsed into.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Callable

import tyro

from fastmarl.config import ALGORITHMS, DEFAULT_ALGO, ConfigError, config_class
from fastmarl.train.checkpoint import CheckpointError
from fastmarl.train.rundir import RunDir
from fastmarl.train.runner import evaluate_run, render_run, train

_FLAT = (tyro.conf.OmitArgPrefixes,)  # --lr rather than --ppo.lr

# every algorithm `fastmarl train --algo` accepts -> (its config class, one line of help): fastmarl.config.ALGORITHMS
TRAIN_ALGOS: dict[str, tuple[type, str]] = {name: (config_class(name), a.help) for name, a in ALGORITHMS.items()}


def _run(cmd: str, fn: Callable[[], int]) -> int:
    try:
        return fn()
    except (ConfigError, CheckpointError, KeyError, TypeError, ValueError) as e:
        # config, checkpoint and env-construction errors carry their own instructions
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"fastmarl {cmd}: error: {msg}", file=sys.stderr)
        return 2


def _train_parser() -> argparse.ArgumentParser:
    algos = "\n".join(f"  {name:<6} {help_}" for name, (_, help_) in TRAIN_ALGOS.items())
    p = argparse.ArgumentParser(
        prog="fastmarl train", add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train agents and write a run directory (config, metrics, checkpoints, learning curve, GIF).",
        epilog=f"algorithms:\n{algos}\n\n`fastmarl train --algo NAME --help` lists that algorithm's options.")
    p.add_argument("--algo", choices=list(TRAIN_ALGOS), default=None,
                   help=f"the learning algorithm (default: {DEFAULT_ALGO})")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its latest checkpoint; the other options override its "
                        "saved config (only budgets, intervals and logging may change)")
    p.add_argument("-h", "--help", action="store_true", help="show this help (with --algo: that algorithm's options)")
    return p


def train_main(argv: list[str]) -> int:
    """``--algo`` (or the resumed run's saved config) picks the config class; tyro parses the
    rest of the command line into it; then train."""
    parser = _train_parser()
    known, rest = parser.parse_known_args(list(argv))
    if known.help and known.algo is None and known.resume is None:
        parser.print_help()
        return 0
    if known.help:
        rest.append("--help")

    def go() -> int:
        default = RunDir.open(known.resume).read_config() if known.resume else None
        if default is not None and known.algo is not None and known.algo != default.algo:
            raise ConfigError(f"{known.resume} is a {default.algo} run; --algo {known.algo} cannot resume it "
                              "(leave --algo out)")
        algo = default.algo if default is not None else (known.algo or DEFAULT_ALGO)
        cls, help_ = TRAIN_ALGOS[algo]
        if default is None:
            default = cls(algo=algo, runs_dir="runs")
        cfg = tyro.cli(cls, args=rest, default=default, prog=f"fastmarl train --algo {algo}", config=_FLAT,
                       description=f"Train {algo}: {help_}. `--resume runs/NAME` continues a run from its last "
                                   "checkpoint (then these options override the saved config).")
        if cfg.runs_dir is None and known.resume is None:
            raise ConfigError("--runs-dir None writes no run directory; `fastmarl train` needs one (e.g. --runs-dir "
                              "runs); call fastmarl.train(...) from Python to train without files")
        res = train(cfg, resume=known.resume)
        summary = f"run directory: {res.run_dir}  ({res.global_step:,} env steps)"
        ev = res.final_eval
        if ev:
            names = {"det": "deterministic", "stoch": "stochastic"}
            modes = [m for m in names if f"return_{m}" in ev]
            summary += "\nfinal eval return per agent: " + ", ".join(f"{names[m]} {ev[f'return_{m}']:.2f}"
                                                                     for m in modes)
        print(summary)
        return 0

    return _run("train", go)


@dataclass
class EvalArgs:
    """Evaluate a run's checkpoint: N episodes, deterministic and stochastic."""

    run: tyro.conf.Positional[str]
    """run directory, e.g. runs/NAME"""
    episodes: int = 100
    """episodes per mode"""
    checkpoint: str | None = None
    """checkpoint folder (default: the run's latest)"""
    seed: int | None = None
    """seed of the evaluation episodes (default: the run's evaluation seed)"""
    json: bool = False
    """print the result as one JSON line"""


def eval_main(argv: list[str]) -> int:
    args = tyro.cli(EvalArgs, args=list(argv), prog="fastmarl eval")

    def go() -> int:
        res = evaluate_run(args.run, args.episodes, args.checkpoint, args.seed)
        if args.json:
            print(json.dumps(res))
        else:
            print(f"{args.run} @ step {int(res['step']):,}, {args.episodes} episodes, return per agent:")
            for mode in ("det", "stoch"):
                extra = "  ".join(f"{k}={v:.2f}" for k, v in res.items() if k.startswith(f"return_{mode}/"))
                print(f"  {'deterministic' if mode == 'det' else 'stochastic':<13} {res[f'return_{mode}']:8.2f} "
                      f"± {res[f'return_std_{mode}']:.2f}  {extra}")
        return 0

    return _run("eval", go)


@dataclass
class RenderArgs:
    """Render one episode of a run's policy to a GIF."""

    run: tyro.conf.Positional[str]
    """run directory, e.g. runs/NAME"""
    out: str | None = None
    """output GIF (default: runs/NAME/episode.gif)"""
    checkpoint: str | None = None
    """checkpoint folder (default: the run's latest)"""
    stochastic: bool = False
    """sample actions instead of taking the most likely one"""
    seed: int | None = None
    """seed of the episode"""


def render_main(argv: list[str]) -> int:
    args = tyro.cli(RenderArgs, args=list(argv), prog="fastmarl render")

    def go() -> int:
        path = render_run(args.run, args.out, args.checkpoint, deterministic=not args.stochastic, seed=args.seed)
        print(f"wrote {path}")
        return 0

    return _run("render", go)
