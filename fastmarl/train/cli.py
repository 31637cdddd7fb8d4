"""``fastmarl train | eval | render``: tyro over the typed configs of fastmarl.config.

``fastmarl train --algo mappo --env simple_spread_v3 --total-steps 2e6``
``fastmarl train --algo qmix --env simple_spread_v3 --total-steps 2e6`` (iql/vdn/qmix parse QConfig)
``fastmarl train --resume runs/NAME [--total-steps 4e6]`` (PPO and value-based runs)
``fastmarl eval runs/NAME [--episodes 100]``
``fastmarl render runs/NAME --out episode.gif``
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Callable

import tyro

from fastmarl.config import VALUE_BASED_ALGOS, ConfigError, TrainConfig

_FLAT = (tyro.conf.OmitArgPrefixes,)  # --lr rather than --ppo.lr


def _run(cmd: str, fn: Callable[[], int]) -> int:
    from fastmarl.train.checkpoint import CheckpointError

    try:
        return fn()
    except (ConfigError, CheckpointError, KeyError, TypeError, ValueError) as e:
        # config, checkpoint and env-construction errors carry their own instructions
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"fastmarl {cmd}: error: {msg}", file=sys.stderr)
        return 2


def _pop_option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i:i + 2]
            return value
        if a.startswith(name + "="):
            del argv[i]
            return a.split("=", 1)[1]
    return None


def _peek_option(argv: list[str], name: str) -> str | None:
    rest = list(argv)
    return _pop_option(rest, name)


def train_main(argv: list[str]) -> int:
    """Parse a TrainConfig (on top of the saved one with --resume), or a QConfig
    when ``--algo`` is value-based (iql/vdn/qmix), and train."""
    argv = list(argv)
    resume = _pop_option(argv, "--resume")

    def go() -> int:
        from fastmarl.train.rundir import RunDir
        from fastmarl.train.runner import train

        default = RunDir.open(resume).read_config() if resume else TrainConfig()
        if not isinstance(default, TrainConfig):  # a value-based run: its QConfig, with the given overrides
            return _train_q(argv, default.algo, resume=resume, default=default)
        algo = _peek_option(argv, "--algo")
        if not resume and algo in VALUE_BASED_ALGOS:
            return _train_q(argv, algo)
        cfg = tyro.cli(TrainConfig, args=argv, default=default, prog="fastmarl train", config=_FLAT,
                       description="Train IPPO/MAPPO (`--algo iql|vdn|qmix --help`: the value-based options). "
                                   "`--resume runs/NAME` continues a run from its last checkpoint "
                                   "(then the other options override the saved config).")
        res = train(cfg, resume=resume)
        ev = res.final_eval
        summary = f"run directory: {res.run_dir}  ({res.global_step:,} env steps)"
        if ev:
            summary += f"\nfinal eval return per agent: deterministic {ev['return_det']:.2f}, " \
                       f"stochastic {ev['return_stoch']:.2f}"
        print(summary)
        return 0

    return _run("train", go)


def _train_q(argv: list[str], algo: str, resume: str | None = None, default=None) -> int:
    from fastmarl.algos.q_learning import QConfig
    from fastmarl.train.runner import train

    cfg = tyro.cli(QConfig, args=argv, default=default or QConfig(algo=algo, runs_dir="runs"), prog="fastmarl train",
                   description="Train IQL/VDN/QMIX (value-based, discrete actions; `fastmarl train --help` for "
                               "IPPO/MAPPO). `--resume runs/NAME` continues a run from its last checkpoint.")
    if cfg.runs_dir is None and resume is None:
        raise ConfigError("--runs-dir None writes no run directory; `fastmarl train` needs one (e.g. --runs-dir "
                          "runs); use fastmarl.train(QConfig(...)) from Python to train without files")
    res = train(cfg, resume=resume)
    print(f"run directory: {res.run_dir}  ({int(res.metrics['steps']):,} env steps)\n"
          f"final eval return per agent: greedy {res.metrics['return_det']:.2f}")
    return 0


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
        from fastmarl.train.runner import evaluate_run

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
        from fastmarl.train.runner import render_run

        path = render_run(args.run, args.out, args.checkpoint, deterministic=not args.stochastic, seed=args.seed)
        print(f"wrote {path}")
        return 0

    return _run("render", go)
