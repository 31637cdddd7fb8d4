"""``fastmarl`` command line: ``fastmarl <command> [options]``.

Each command lives in its own module and parses its own options (tyro over a
typed dataclass); this file only dispatches. The command modules (``fastmarl.cli.train``,
...) are the top layer: they may import every layer below.
"""

from __future__ import annotations

import importlib
import sys

from fastmarl.envs.api import check_known_keys

# command -> (module, function, one-line help)
COMMANDS = {
    "envs": ("fastmarl.envs.cli", "main", "list the registered environments"),
    "bench": ("fastmarl.bench", "main", "benchmarks: `fastmarl bench envs` measures env-steps/s"),
    "train": ("fastmarl.cli.train", "train_main", "train agents: `fastmarl train --algo mappo --env simple_spread_v3`"),
    "eval": ("fastmarl.cli.train", "eval_main", "evaluate a run directory"),
    "render": ("fastmarl.cli.train", "render_main", "render an episode of a run to a GIF"),
    "export": ("fastmarl.cli.export", "main", "export a run's actors to ONNX: `fastmarl export runs/NAME`"),
    "sweep": ("fastmarl.cli.sweep", "main", "a grid of training runs (or a search) as Ray Tune trials, with a summary"),
    "selfplay": ("fastmarl.cli.selfplay", "main",
                 "competitive training with self-play pools, Elo ratings and exploitability"),
}


def _usage() -> str:
    lines = ["usage: fastmarl <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    try:
        check_known_keys([cmd], COMMANDS, "command")
    except ValueError as e:
        print(f"fastmarl: {e}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[cmd]
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        print(f"fastmarl: command {cmd!r} is not available in this version", file=sys.stderr)
        return 2
    return int(fn(rest) or 0)

