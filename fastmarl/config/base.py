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
import typing
from typing import Annotated, Any

import tyro

from fastmarl.envs.api import check_known_keys

EVAL_SEED_OFFSET = 1_000_003  # evaluation envs are seeded seed + this: they never share start states with training


class ConfigError(ValueError):
    """An invalid setting or combination of settings; the message says how to fix it."""


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


# -- checks ---------------------------------------------------------------------------

def check_int(name: str, value: Any, low: int) -> None:
    """``value`` is an int (not a bool) >= ``low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def check_unit(name: str, value: Any, what: str = "must be in [0, 1]") -> None:
    """``value`` is a number in [0, 1] (a probability, a discount, a mixing weight)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} {what}, got {value!r}")


def check_positive(name: str, value: Any, what: str = "must be > 0") -> None:
    """``value`` is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} {what}, got {value!r}")


def check_run(cfg: Any, log_interval_low: int = 0) -> None:
    """The settings every run has (``env_kwargs``, ``num_envs``, ``total_steps``, the intervals,
    ``eval_episodes``, ``keep_checkpoints``, ``threads``), for every algorithm's config."""
    for name, low in [("num_envs", 1), ("total_steps", 1), ("eval_episodes", 1), ("keep_checkpoints", 1),
                      ("eval_interval", 0), ("log_interval", log_interval_low), ("checkpoint_interval", 0)]:
        check_int(name, getattr(cfg, name), low)
    if not isinstance(cfg.env_kwargs, dict):
        raise ConfigError(f"env_kwargs must be a mapping of keyword arguments, got {cfg.env_kwargs!r}")
    for k, v in cfg.env_kwargs.items():
        try:
            json.dumps(v)
        except TypeError:
            raise ConfigError(f"env kwarg {k}={v!r} cannot be saved in the run's config.json; use JSON values "
                              "(numbers, strings, booleans, None, lists)") from None
    if cfg.threads is not None:
        check_int("threads", cfg.threads, 1)
