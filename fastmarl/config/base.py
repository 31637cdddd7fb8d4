"""What every config shares: the error type, the command-line types, the one dict reader and
the checks every run's settings get.

``config_from_dict(cls, d)`` builds any config dataclass from a dict (a run's
``config.json``), nested config dataclasses included; an unknown key is a
:class:`ConfigError` that names the closest valid key. ``check_run`` validates the
settings every run has (budget, envs, intervals, logging, threads, env kwargs),
for every algorithm alike; each algorithm's validator adds its own checks.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import re
import typing
import warnings
from typing import Annotated, Any, Literal

import tyro
import tyro.extras

from fastmarl.envs.api import EnvSpec, check_device, check_known_keys, memory_available
from fastmarl.envs.workers import BACKENDS

EVAL_SEED_OFFSET = 1_000_003  # evaluation envs are seeded seed + this: they never share start states with training


class ConfigError(ValueError):
    """An invalid setting or combination of settings; the message says how to fix it.

    ``fields``: the config fields the message names (dotted, e.g. ``"ppo.num_steps"``), so that
    the command line can name them by their flags instead (``--num-steps``)."""

    def __init__(self, message: str, fields: tuple[str, ...] = ()):
        super().__init__(message)
        self.fields = tuple(fields)


def _parse_count(args: list[str]) -> int:
    v = float(args[0])  # accepts 2e6 as well as 2000000
    if v != int(v):
        raise ValueError(f"expected a whole number, got {args[0]}")
    return int(v)


def parse_env_kwargs(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["N=3", "local_ratio=0.5"]`` -> ``{"N": 3, "local_ratio": 0.5}``; values are
    Python literals when they parse as one (3, 0.5, True, None), else strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"env kwargs are KEY=VALUE pairs (e.g. N=3), got {item!r}")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


# `--total-steps 2e6` and `--env-kwargs N=3 local_ratio=0.5` on the command line
StepCount = Annotated[int, tyro.constructors.PrimitiveConstructorSpec(
    nargs=1, metavar="INT", instance_from_str=_parse_count,
    is_instance=lambda x: isinstance(x, int), str_from_instance=lambda x: [str(x)])]
EnvBackend = Literal["inprocess", "process", "ray"]  # fastmarl.envs.workers.BACKENDS, for --env-backend
EnvKwargs = Annotated[dict[str, Any], tyro.constructors.PrimitiveConstructorSpec(
    nargs="*", metavar="KEY=VALUE", instance_from_str=parse_env_kwargs,
    is_instance=lambda x: isinstance(x, dict), str_from_instance=lambda d: [f"{k}={v!r}" for k, v in d.items()])]



def config_key_kind(cls: type, where: str) -> str:
    """How an unknown-key error names a key of config class ``cls`` found at ``where``
    (a dotted prefix such as ``"ppo."``, or ``""`` at the top)."""
    return f"{cls.__name__} key" + (f" in {where.rstrip('.')}" if where else "")


def config_from_dict(cls: type, d: Any, where: str = ""):
    """``cls(**d)`` for a config dataclass, its nested config dataclasses (e.g. ``ppo``) built the
    same way; unknown keys are ConfigErrors naming the closest valid key."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where.rstrip('.') or cls.__name__}: expected a mapping, got {type(d).__name__}")
    check_known_keys(d, [f.name for f in dataclasses.fields(cls)], config_key_kind(cls, where), ConfigError)
    hints = typing.get_type_hints(cls)
    kw = {}
    for k, v in d.items():
        sub = hints[k]
        if dataclasses.is_dataclass(sub) and isinstance(sub, type):
            v = config_from_dict(sub, v, f"{where}{k}.")
        kw[k] = v
    return cls(**kw)


def flag_names(cls: type, config: tuple = ()) -> dict[str, str]:
    """Config field (dotted, as ``ConfigError.fields`` names it: ``"ppo.num_steps"``) -> its flag on
    a command line parsed into ``cls`` by tyro with ``config`` (``"--num-steps"``), read from the
    parser tyro builds for it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tyro 1.0 deprecates get_parser, not its parser
        parser = tyro.extras.get_parser(cls, config=config)
    return {a.dest.replace("-", "_"): a.option_strings[-1] if a.option_strings[0].startswith("--no-")
            else a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"}


def with_flags(e: ConfigError, names: dict[str, str]) -> str:
    """``e``'s message with each field it names written as its flag (``names``: ``flag_names``):
    every occurrence of a dotted or snake_case name, the first of a plain word (``device``: the
    message starts with it)."""
    msg = str(e)
    for name in getattr(e, "fields", ()):
        if name in names:
            msg = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", names[name], msg,
                         count=0 if "." in name or "_" in name else 1)
    return msg


# -- checks ---------------------------------------------------------------------------

# Each check names the field (``name``, dotted for nested configs) first in its message and in
# ConfigError.fields: ``fastmarl train`` shows the field's flag there instead.

def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(name: str, value: Any, low: int) -> None:
    """``value`` is an int (not a bool) >= ``low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}", (name,))


def check_unit(name: str, value: Any, what: str = "must be in [0, 1]") -> None:
    """``value`` is a number in [0, 1] (a probability, a discount, a mixing weight)."""
    if not _number(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} {what}, got {value!r}", (name,))


def check_positive(name: str, value: Any, what: str = "must be > 0") -> None:
    """``value`` is a finite number > 0."""
    if not _number(value) or not value > 0:
        raise ConfigError(f"{name} {what}, got {value!r}", (name,))


def check_at_least(name: str, value: Any, low: float) -> None:
    """``value`` is a finite number >= ``low``."""
    if not _number(value) or not value >= low:
        raise ConfigError(f"{name} must be a finite number >= {low}, got {value!r}", (name,))


def check_finite(name: str, value: Any) -> None:
    """``value`` is a finite number."""
    if not _number(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}", (name,))


GiB = 2 ** 30
MEMORY_MARGIN = 0.8  # a run may plan on this share of the free memory (the env, torch and Python need the rest)


def check_memory(what: str, need: int, per_env: int, cfg: Any, spec: EnvSpec, advice: str = "",
                 note: str | None = None) -> None:
    """Refuse, before anything is allocated, a run whose estimated memory ``need`` (bytes, of which
    ``per_env`` per env of ``num_envs``) exceeds MEMORY_MARGIN of what ``cfg.device`` has free,
    in one line naming the settings that fit; a run on an env with image observations says that
    they are flattened into MLP inputs (or ``note``: how the learner handles them)."""
    avail = memory_available(cfg.device)
    if avail is None or need <= MEMORY_MARGIN * avail:
        return
    budget = MEMORY_MARGIN * avail
    fit = int((budget - (need - per_env * cfg.num_envs)) // per_env) if per_env else 0
    sizes = {g.name: g.obs_dim for g in spec.groups.values()}
    images = [g.name for g in spec.groups.values() if g.image_observations]
    hint = f"--num-envs {fit} fits" if fit >= 1 else "even one env does not fit"
    seen = (f"; the observations of {images} are images flattened into MLP inputs ({sizes} floats per agent)"
            if images else f"; observation floats per agent: {sizes}")
    seen = note if note is not None else seen
    raise ConfigError(f"{what} needs about {need / GiB:.1f} GiB, more than {MEMORY_MARGIN:.0%} of the "
                      f"{avail / GiB:.1f} GiB free on {cfg.device} (num_envs={cfg.num_envs}): {hint}{advice}{seen}",
                      ("num_envs",))


def check_env_settings(cfg: Any) -> None:
    """What setting up the run uses before its learner is validated (``threads``, ``num_envs``,
    ``seed``, ``device``, ``env_kwargs``): checked first, so that a bad value is named as the
    setting it is rather than failing inside torch or the env."""
    if cfg.threads is not None:
        check_int("threads", cfg.threads, 1)
    check_int("num_envs", cfg.num_envs, 1)
    check_int("seed", cfg.seed, 0)
    try:
        check_device(cfg.device)
    except ValueError as e:
        raise ConfigError(str(e), ("device",)) from None
    backend, workers = getattr(cfg, "env_backend", "inprocess"), getattr(cfg, "env_workers", None)
    if backend not in BACKENDS:
        raise ConfigError(f"env_backend must be one of {list(BACKENDS)}, got {backend!r}", ("env_backend",))
    if backend != "inprocess" and not str(cfg.env).startswith("pz:"):
        raise ConfigError(f"env_backend={backend!r} steps a PettingZoo env (env='pz:<module>') in workers; "
                          f"{cfg.env!r} is batched on the torch device already: leave env_backend at 'inprocess'",
                          ("env_backend",))
    if workers is not None:
        if backend == "inprocess":
            raise ConfigError("env_workers sets the workers of env_backend 'process' or 'ray'; with 'inprocess' "
                              "the envs are stepped in this process (set env_backend, or leave env_workers out)",
                              ("env_workers", "env_backend"))
        check_int("env_workers", workers, 1)
        if workers > cfg.num_envs:
            raise ConfigError(f"env_workers={workers} is more than num_envs={cfg.num_envs}: each worker steps at "
                              "least one env", ("env_workers", "num_envs"))
    if not isinstance(cfg.env_kwargs, dict):
        raise ConfigError(f"env_kwargs must be a mapping of keyword arguments, got {cfg.env_kwargs!r}")
    for k, v in cfg.env_kwargs.items():
        try:
            json.dumps(v)
        except TypeError:
            raise ConfigError(f"env kwarg {k}={v!r} cannot be saved in the run's config.json; use JSON values "
                              "(numbers, strings, booleans, None, lists)") from None


def check_run(cfg: Any, log_interval_low: int = 0) -> None:
    """The settings every run has (``check_env_settings``, ``total_steps``, the intervals,
    ``eval_episodes``, ``keep_checkpoints``), for every algorithm's config."""
    check_env_settings(cfg)
    for name, low in [("total_steps", 1), ("eval_episodes", 1), ("keep_checkpoints", 1),
                      ("eval_interval", 0), ("log_interval", log_interval_low), ("checkpoint_interval", 0)]:
        check_int(name, getattr(cfg, name), low)
