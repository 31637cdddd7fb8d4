"""The config of a sweep (``fastmarl sweep``): a grid of training runs, or a hyper-parameter search.

A sweep's trials are the product of ``algos`` x ``envs`` x ``env_kwargs`` x ``seeds`` x the
``grid`` (config key -> values; dotted keys reach nested configs: ``ppo.lr``), each trial's
config being the algorithm's config with ``set`` (fixed overrides) and its grid point applied.
With ``search = "optuna"`` (or ``"random"``, Tune's own), ``num_samples`` trials are drawn
instead: every list of the grid is a categorical choice and ``space`` adds distributions
(``"loguniform(1e-4, 1e-2)"``, ``"uniform(a, b)"``, ``"randint(a, b)"``, ``"choice(a, b, ...)"``).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from fastmarl.config.base import ConfigError, check_at_least, check_int, config_from_dict

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


@dataclass
class SweepConfig:
    """A grid of training runs as Ray Tune trials (``fastmarl sweep``)."""

    algos: list[str] = field(default_factory=lambda: ["mappo"])
    """algorithms (``fastmarl train --algo`` names)"""
    envs: list[str] = field(default_factory=lambda: ["simple_spread_v3"])
    """env ids, or pz:<module> PettingZoo envs"""
    env_kwargs: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    """env keyword-argument sets, one grid axis (each a dict)"""
    seeds: list[int] = field(default_factory=lambda: [0])
    """seeds, one grid axis"""
    grid: dict[str, list[Any]] = field(default_factory=dict)
    """config key -> values, each a grid axis (dotted keys for nested configs: ppo.lr)"""
    set: dict[str, Any] = field(default_factory=dict)
    """config key -> one value for every trial (e.g. total_steps)"""
    name: str = "sweep"
    """the sweep's folder under storage"""
    storage: str = "runs/sweeps"
    """where the sweep writes (reachable from every node of the cluster): storage/name/runs/<trial> are
    ordinary run directories"""
    address: str | None = None
    """Ray cluster to join: auto or HOST:PORT (None: start Ray on this machine's cores)"""
    cpus_per_trial: float = 1.0
    """CPUs reserved for each trial"""
    gpus_per_trial: float = 0.0
    """GPUs (a fraction is allowed) reserved for each trial"""
    max_concurrent: int | None = None
    """trials running at once (None: as many as the resources allow)"""
    max_failures: int = 3
    """restarts of a trial whose worker process or node dies (it resumes from its last checkpoint)"""
    search: Literal["grid", "optuna", "random"] = "grid"
    """grid: every combination; optuna / random: num_samples trials drawn from the grid's lists and space"""
    space: dict[str, str] = field(default_factory=dict)
    """search distributions, config key -> e.g. "loguniform(1e-4, 1e-2)" (optuna / random)"""
    metric: str = "return_det"
    """the metric the search optimises and early stopping compares (reported at every evaluation)"""
    mode: Literal["max", "min"] = "max"
    """maximise or minimise metric"""
    num_samples: int = 8
    """trials of a search"""
    early_stop: bool = False
    """stop bad trials early (ASHA on metric, compared at evaluations)"""
    grace_evals: int = 1
    """early stopping: evaluations every trial gets before it can be stopped"""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepConfig":
        """From a dict (a TOML file's tables, a saved sweep.json); unknown keys are errors."""
        return config_from_dict(cls, d)


def parse_distribution(key: str, text: str) -> tuple[str, list[Any]]:
    """``"loguniform(1e-4, 1e-2)"`` -> ``("loguniform", [1e-4, 1e-2])``; ConfigError otherwise."""
    m = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", str(text))
    if not m or m.group(1) not in DISTRIBUTIONS:
        raise ConfigError(f"space[{key!r}] = {text!r}: expected one of {', '.join(d + '(...)' for d in DISTRIBUTIONS)}, "
                          "e.g. loguniform(1e-4, 1e-2)", ("space",))
    try:
        args = list(ast.literal_eval(f"[{m.group(2)}]"))
    except (ValueError, SyntaxError):
        raise ConfigError(f"space[{key!r}] = {text!r}: the arguments must be Python literals", ("space",)) from None
    kind = m.group(1)
    if kind != "choice" and (len(args) != 2 or not all(isinstance(a, (int, float)) for a in args) or args[0] >= args[1]):
        raise ConfigError(f"space[{key!r}] = {text!r}: {kind} takes two numbers low < high", ("space",))
    if kind == "loguniform" and args[0] <= 0:
        raise ConfigError(f"space[{key!r}] = {text!r}: loguniform needs low > 0", ("space",))
    if kind == "choice" and not args:
        raise ConfigError(f"space[{key!r}] = {text!r}: choice needs at least one value", ("space",))
    return kind, args


def validate_sweep(sc: SweepConfig) -> None:
    """The sweep's own settings (the trials' configs are checked by the sweep runner)."""
    for name in ("algos", "envs", "env_kwargs", "seeds"):
        v = getattr(sc, name)
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{name} must be a non-empty list, got {v!r}", (name,))
    if not all(isinstance(k, dict) for k in sc.env_kwargs):
        raise ConfigError(f"env_kwargs must be a list of dicts (one per grid point), got {sc.env_kwargs!r}",
                          ("env_kwargs",))
    for s in sc.seeds:
        check_int("seeds", s, 0)
    for k, v in sc.grid.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"grid[{k!r}] must be a non-empty list of values, got {v!r}", ("grid",))
    for k in ("algo", "env", "env_kwargs", "seed", "name", "runs_dir"):
        if k in sc.grid or k in sc.set or k in sc.space:
            raise ConfigError(f"{k!r} is set by the sweep itself (algos, envs, env_kwargs, seeds; name and runs_dir "
                              "per trial); remove it from grid/set/space", ("grid",))
    both = (set(sc.grid) & set(sc.set)) | (set(sc.space) & (set(sc.grid) | set(sc.set)))
    if both:
        raise ConfigError(f"{sorted(both)} appear in more than one of grid, set and space; give each key once",
                          ("grid",))
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", sc.name or ""):
        raise ConfigError(f"name {sc.name!r}: use letters, digits, '_', '-' and '.'", ("name",))
    check_at_least("cpus_per_trial", sc.cpus_per_trial, 0)
    check_at_least("gpus_per_trial", sc.gpus_per_trial, 0)
    if sc.max_concurrent is not None:
        check_int("max_concurrent", sc.max_concurrent, 1)
    check_int("max_failures", sc.max_failures, 0)
    check_int("num_samples", sc.num_samples, 1)
    check_int("grace_evals", sc.grace_evals, 1)
    if sc.search == "grid" and sc.space:
        raise ConfigError("space is for --search optuna or random; a grid search takes lists in grid", ("space",))
    if sc.search not in ("grid", "optuna", "random"):
        raise ConfigError(f"search must be grid, optuna or random, got {sc.search!r}", ("search",))
    if sc.mode not in ("max", "min"):
        raise ConfigError(f"mode must be max or min, got {sc.mode!r}", ("mode",))
    for k, text in sc.space.items():
        parse_distribution(k, text)
