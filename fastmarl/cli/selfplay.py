"""``fastmarl selfplay [options]``: competitive training with self-play pools, then the evaluation
matrix, Elo ratings and exploitability (:func:`fastmarl.analysis.competitive.train_and_evaluate`).

``--resume runs/NAME`` continues a competitive run from its latest checkpoint; the other options
then override its saved config (only budgets, intervals, logging and the after-training analysis
may change)::

    fastmarl selfplay --env simple_tag_v3 --groups adversary=mappo agent=ippo,lr=0.001 \\
        --total-steps 2e6 --threads 1 --exploitability-steps 5e5

``--groups`` takes ``NAME=MODE[,key=value...]`` with MODE ``mappo``/``ippo`` (trained; the
key=value pairs override that group's PPO settings), ``frozen:PATH`` (a pool snapshot, a
``fastmarl train`` run directory or one of its checkpoints), ``scripted:NAME`` or ``random``;
unnamed groups train with MAPPO.
"""

from __future__ import annotations

import argparse
import sys

import tyro

from fastmarl.analysis.competitive import train_and_evaluate
from fastmarl.config import ConfigError, flag_names, with_flags
from fastmarl.config.competitive import CompetitiveConfig
from fastmarl.train.checkpoint import CheckpointError
from fastmarl.train.selfplay import read_config

_FLAT = (tyro.conf.OmitArgPrefixes,)


def main(argv: list[str]) -> int:
    """``fastmarl selfplay [--resume RUN_DIR] [options]``: train, then the matrix, ratings and exploitability."""
    p = argparse.ArgumentParser(prog="fastmarl selfplay", add_help=False)
    p.add_argument("--resume", metavar="RUN_DIR", default=None)
    known, rest = p.parse_known_args(list(argv))
    try:
        default = read_config(known.resume) if known.resume else CompetitiveConfig()
        cfg = tyro.cli(CompetitiveConfig, args=rest, default=default, prog="fastmarl selfplay", config=_FLAT,
                       description="Competitive / mixed training with self-play pools (fastmarl.train.selfplay); "
                                   "`--resume runs/NAME` continues a run from its latest checkpoint.")
        res = train_and_evaluate(cfg, resume=known.resume)
    except (ConfigError, CheckpointError, KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        if isinstance(e, ConfigError) and e.fields:  # the settings by the flags the user typed
            msg = with_flags(e, flag_names(CompetitiveConfig, _FLAT))
        print(f"fastmarl selfplay: error: {msg}", file=sys.stderr)
        return 2
    print(f"run directory: {res.run_dir}  ({res.global_step:,} env steps)")
    return 0
