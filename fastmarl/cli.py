"""``fastmarl`` command line: ``fastmarl <command> [options]``.

Each command lives in its own module and parses its own options (tyro over a
typed dataclass); this file only dispatches.
"""

from __future__ import annotations

import difflib
import importlib
import sys

# command -> (module, function, one-line help)
COMMANDS = {
    "envs": ("fastmarl.envs.cli", "main", "list the registered environments"),
    "bench": ("fastmarl.bench", "main", "benchmarks: `fastmarl bench envs` measures env-steps/s"),
    "train": ("fastmarl.train.cli", "train_main", "train agents: `fastmarl train --algo mappo --env simple_spread_v3`"),
    "eval": ("fastmarl.train.cli", "eval_main", "evaluate a run directory"),
    "render": ("fastmarl.train.cli", "render_main", "render an episode of a run to a GIF"),
    "selfplay": ("fastmarl.train.competitive", "main",
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
    if cmd not in COMMANDS:
        close = difflib.get_close_matches(cmd, list(COMMANDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"fastmarl: unknown command {cmd!r}{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[cmd]
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        print(f"fastmarl: command {cmd!r} is not available in this version", file=sys.stderr)
        return 2
    return int(fn(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
