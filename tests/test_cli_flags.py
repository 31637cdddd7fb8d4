"""Every ``--flag`` the docs and messages tell users to type is an option of the command it is quoted with.

Sources: README.md, docs/**/*.md, experiments/README.md, and the string literals (docstrings, help and
error messages) of experiments/*.py and fastmarl/**/*.py. A quote belongs to the nearest command to its
left in the same unit (a line, or lines joined by an open backtick span or a trailing backslash):
``fastmarl train|eval|render|selfplay|bench envs`` (train with the parser its ``--algo`` selects) or
``python experiments/x.py`` / ``python benchmarks/x.py``; without one, to the file's own command
(``FILE_COMMAND``, or the script itself). The option lists come from the real parsers (``options_of``).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import inspect
import io
import re
import sys
import tokenize
import warnings
from functools import lru_cache
from pathlib import Path
from unittest import mock

import pytest
import tyro
import tyro.extras

ROOT = Path(__file__).resolve().parents[1]

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:[.-][a-z0-9]+)*(?![\w>-])")
COMMAND = re.compile(r"fastmarl\s+(?:[a-z]+/)*(?P<fm>train|eval|render|selfplay|export|sweep|bench\s+envs|envs)\b"
                     r"|python\s+(?P<script>(?:experiments|benchmarks)/\w+\.py)"
                     r"|(?P<other>ray\s+start)\b")  # another tool's command: its flags are its own, not checked
ALGO = re.compile(r"--algo[ =]([a-z]+)")
# a quoted value of these options is the argument list of another command
PASS_THROUGH = {"--fastmarl-q-args": "fastmarl train --algo qmix"}

# the command of a file's quotes that name none on their unit (experiments/x.py: the script itself)
FILE_COMMAND = {
    "README.md": "fastmarl train",
    "docs/mappo_vs_ippo.md": "python experiments/mappo_vs_ippo.py",
    "docs/credit_assignment.md": "python experiments/credit_assignment.py",
    "fastmarl/config/base.py": "fastmarl train",
    "fastmarl/config/ppo.py": "fastmarl train",
    "fastmarl/config/images.py": "fastmarl train",
    "docs/images.md": "fastmarl train",
    "fastmarl/config/q.py": "fastmarl train --algo qmix",
    "fastmarl/config/happo.py": "fastmarl train --algo happo",
    "fastmarl/config/offpolicy.py": "fastmarl train --algo masac",
    "fastmarl/cli/train.py": "fastmarl train",
    "fastmarl/train/runner.py": "fastmarl train",
    "fastmarl/train/rundir.py": "fastmarl train",
    "fastmarl/train/checkpoint.py": "fastmarl train",
    "fastmarl/algos/q_learning.py": "fastmarl train --algo qmix",
    "fastmarl/train/selfplay.py": "fastmarl selfplay",
    "fastmarl/cli/selfplay.py": "fastmarl selfplay",
    "fastmarl/config/competitive.py": "fastmarl selfplay",
    "fastmarl/bench.py": "fastmarl bench envs",
    "fastmarl/train/deploy.py": "fastmarl train",
    "fastmarl/train/export.py": "fastmarl export",
    "fastmarl/cli/export.py": "fastmarl export",
    "docs/scale.md": "fastmarl sweep",
    "fastmarl/cli/sweep.py": "fastmarl sweep",
    "fastmarl/train/sweep.py": "fastmarl sweep",
    "fastmarl/config/sweep.py": "fastmarl sweep",
}


class _Parsed(BaseException):
    """Raised by the patched parse entry points with what they were asked to parse (BaseException: the
    commands' own error handlers must not catch it)."""


def _captured(call) -> object:
    try:
        call()
    except _Parsed as e:
        return e.args[0]
    raise AssertionError(f"{call} returned without parsing its options")


@lru_cache(maxsize=None)
def options_of(command: str) -> frozenset[str]:
    """The option strings of ``command`` ("fastmarl train --algo qmix", "python experiments/x.py"): its
    entry point runs until it parses, with tyro.cli / argparse patched to hand over what it would parse;
    ``fastmarl train`` thus picks the parser its ``--algo`` selects itself."""
    m = COMMAND.match(command)
    assert m, command
    if m["script"]:
        path = ROOT / m["script"]
        spec = importlib.util.spec_from_file_location(f"_cli_flags_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up while the script runs
        spec.loader.exec_module(mod)

        def hand_over(self, *args, **kwargs):
            raise _Parsed(self)

        with mock.patch.object(argparse.ArgumentParser, "parse_args", hand_over), \
                mock.patch.object(argparse.ArgumentParser, "parse_known_args", hand_over):
            return frozenset(_captured(mod.main)._option_string_actions)
    name = " ".join(m["fm"].split())
    if name == "envs":  # takes no options
        return frozenset()
    from fastmarl.cli import COMMANDS

    if name == "sweep":  # an argparse command
        def hand_over_parser(self, *args, **kwargs):
            raise _Parsed(self)

        with mock.patch.object(argparse.ArgumentParser, "parse_args", hand_over_parser):
            module, func, _ = COMMANDS["sweep"]
            return frozenset(_captured(lambda: getattr(importlib.import_module(module), func)([]))
                             ._option_string_actions)

    module, func, _ = COMMANDS[name.split()[0]]
    algo = ALGO.search(command)
    argv = (["envs"] if name == "bench envs" else []) + (["--algo", algo[1]] if algo else [])

    def hand_over(f, **kwargs):
        raise _Parsed((f, kwargs))

    def hand_over_parser(self, *args, **kwargs):  # a command parsed by argparse (fastmarl export)
        raise _Parsed(self)

    with mock.patch.object(tyro, "cli", hand_over), \
            mock.patch.object(argparse.ArgumentParser, "parse_args", hand_over_parser):
        got = _captured(lambda: getattr(importlib.import_module(module), func)(argv))
    if isinstance(got, argparse.ArgumentParser):
        return frozenset(got._option_string_actions)
    f, kwargs = got
    allowed = inspect.signature(tyro.extras.get_parser).parameters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # get_parser: tyro's argparse view of the same spec
        parser = tyro.extras.get_parser(f, **{k: v for k, v in kwargs.items() if k in allowed})
    # the pre-parser takes these before tyro parses the rest
    extra = {"train": {"--resume", "--algo"}, "selfplay": {"--resume"}}.get(name, set())
    return frozenset(parser._option_string_actions) | extra


def _python_strings(text: str):
    """(line, text) of each string literal of a Python source, f-strings whole (Python 3.12 splits them)."""
    lines = text.splitlines(keepends=True)

    def source(start, end):
        (r0, c0), (r1, c1) = start, end
        if r0 == r1:
            return lines[r0 - 1][c0:c1]
        return lines[r0 - 1][c0:] + "".join(lines[r0:r1 - 1]) + lines[r1 - 1][:c1]

    depth, start = 0, None
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        kind = tokenize.tok_name[tok.type]
        if kind == "STRING" and depth == 0:
            yield tok.start[0], tok.string
        elif kind == "FSTRING_START":
            depth += 1
            start = start or tok.start
        elif kind == "FSTRING_END":
            depth -= 1
            if depth == 0:
                yield start[0], source(start, tok.end)
                start = None


def _units(path: Path):
    """(line, text) units of a file in which a quote and its command must stand together."""
    text = path.read_text()
    if path.suffix == ".md":
        chunks, fenced = [], False
        for i, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                chunks.append((i, ""))  # a fence ends the unit before it
                continue
            chunks.append((i, line))
    else:
        chunks = []
        for row, literal in _python_strings(text):
            body = re.sub(r"^[a-zA-Z]*('''|\"\"\"|'|\")|('''|\"\"\"|'|\")$", "", literal)
            if FLAG.fullmatch(body.split("=", 1)[0]):
                continue  # one argv element in code (e.g. `argv.index("--resume")`), not a quote
            chunks += [(row + k, line) for k, line in enumerate(literal.split("\n"))]
            chunks.append((row, ""))
    unit, first = "", None
    for i, line in chunks:
        if not line:
            if unit:
                yield first, unit
            unit, first = "", None
            continue
        first = first or i
        unit += line.rstrip().rstrip("\\") + " "
        open_span = len(re.findall(r"`+", unit)) % 2
        if not open_span and not line.rstrip().endswith("\\"):
            yield first, unit
            unit, first = "", None
    if unit:
        yield first, unit


def quotes_in(path: Path, rel: str):
    """(line, flag, command) of each ``--flag`` quoted in ``path`` (``rel``: its path in the repository)."""
    default = FILE_COMMAND.get(rel) or (f"python {rel}" if rel.startswith("experiments/") and rel.endswith(".py")
                                        else None)
    for line, unit in _units(path):
        mentions = list(COMMAND.finditer(unit))
        passes = [(q.start(), q.end(), PASS_THROUGH[q[1]]) for q in re.finditer(r'(--[a-z-]+)\s+"[^"]*"?', unit)
                  if q[1] in PASS_THROUGH]
        for flag in FLAG.finditer(unit):
            inside = [cmd for start, end, cmd in passes if start < flag.start() < end]
            left = [m for m in mentions if m.start() < flag.start()]
            if inside:
                command = inside[0]
            elif left:
                m = left[-1]
                nxt = next((n.start() for n in mentions if n.start() > m.start()), len(unit))
                command = m[0] + "".join(f" --algo {a}" for a in ALGO.findall(unit[m.end():nxt])[:1])
            else:
                command = default
            yield line, flag[0], command


def sources() -> list[Path]:
    return sorted([ROOT / "README.md", ROOT / "experiments" / "README.md", *(ROOT / "docs").rglob("*.md"),
                   *(ROOT / "experiments").glob("*.py"), *(ROOT / "fastmarl").rglob("*.py")])


def problems(paths, root: Path = ROOT) -> list[str]:
    out = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        for line, flag, command in quotes_in(path, rel):
            if command is None:
                out.append(f"{rel}:{line}: {flag}: no command on its line; name it there, or give {rel} "
                           "one in FILE_COMMAND")
                continue
            if COMMAND.match(command)["other"]:
                continue
            options = options_of(command)
            if flag not in options:
                close = difflib.get_close_matches(flag, sorted(options), n=1)
                out.append(f"{rel}:{line}: {flag} is not an option of `{command}`"
                           + (f" (did you mean {close[0]}?)" if close else ""))
    return out


def test_every_quoted_flag_parses():
    paths = sources()
    count = sum(1 for p in paths for _ in quotes_in(p, p.relative_to(ROOT).as_posix()))
    assert count > 150, f"only {count} quoted flags found: has the collector stopped seeing them?"
    bad = problems(paths)
    assert not bad, "flags quoted that their command does not take:\n" + "\n".join(bad)


@pytest.mark.parametrize("text, flag, command", [
    ("`fastmarl train --algo mappo --ppo.comm dial`", "--ppo.comm", "fastmarl train --algo mappo"),
    ("fastmarl train --algo qmix --double-q", "--double-q", "fastmarl train --algo qmix"),
    ("(`fastmarl train --env x\n--num-envs 8`)", "--num-envs", "fastmarl train"),
    ("`python experiments/selfplay.py --env x` for ``--br-steps``", "--br-steps",
     "python experiments/selfplay.py"),
    ('`python benchmarks/bench_training.py --fastmarl-q-args "--num-envs 32"`', "--num-envs",
     "fastmarl train --algo qmix"),
])
def test_quotes_are_attributed_to_their_command(tmp_path, text, flag, command):
    (tmp_path / "doc.md").write_text(text + "\n")
    assert (flag, command) in [(f, c) for _, f, c in quotes_in(tmp_path / "doc.md", "doc.md")]


def test_a_wrong_flag_is_reported(tmp_path):
    (tmp_path / "doc.md").write_text("`fastmarl train --ppo.comm dial` and `fastmarl train --algo qmix --comm none`\n")
    bad = problems([tmp_path / "doc.md"], root=tmp_path)
    assert len(bad) == 1 and "--ppo.comm" in bad[0] and "did you mean --comm?" in bad[0], bad
