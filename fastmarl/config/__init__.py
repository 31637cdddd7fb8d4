"""Every config of fastmarl, in one place: typed dataclasses, validated in one place each.

- :mod:`~fastmarl.config.base`: ``ConfigError``, the command-line types (``StepCount``,
  ``EnvKwargs``), ``config_from_dict`` (unknown keys rejected with the closest valid name)
  and the checks every run's settings get (``check_run``);
- :mod:`~fastmarl.config.algorithms`: every algorithm of ``fastmarl train --algo``, its
  config family and capabilities (``ALGORITHMS``);
- :mod:`~fastmarl.config.ppo`: ``TrainConfig`` / ``PPOConfig`` and ``resolve`` (IPPO, MAPPO);
- :mod:`~fastmarl.config.happo`: ``HAPPOTrainConfig`` / ``HAPPOConfig`` and ``resolve_happo`` (HAPPO);
- :mod:`~fastmarl.config.q`: ``QConfig`` and ``validate_q_config`` (IQL, VDN, QMIX);
- :mod:`~fastmarl.config.offpolicy`: ``SACConfig`` / ``DDPGConfig`` and ``validate_offpolicy`` (MASAC,
  ISAC, MADDPG, IDDPG);
- :mod:`~fastmarl.config.tabular`: ``TabularConfig`` (tabular IQL).
- :mod:`~fastmarl.config.competitive`: ``CompetitiveConfig`` / ``GroupSetup`` (self-play, ``fastmarl selfplay``).

``config_class(algo)`` is the config class of an algorithm and ``config_from_saved(d)``
rebuilds a run's saved ``config.json``: the CLI and the run directories use these.
"""

from __future__ import annotations

from typing import Any

from fastmarl.config.algorithms import ALGORITHMS, DEFAULT_ALGO, AlgoSpec, algo_spec, applicable_algorithms
from fastmarl.config.base import (
    EVAL_SEED_OFFSET,
    ConfigError,
    EnvKwargs,
    StepCount,
    check_at_least,
    check_env_settings,
    check_finite,
    check_int,
    check_positive,
    check_run,
    check_unit,
    config_from_dict,
    config_key_kind,
    flag_names,
    parse_env_kwargs,
    with_flags,
)
from fastmarl.config.happo import HAPPOConfig, HAPPOTrainConfig, resolve_happo
from fastmarl.config.offpolicy import DDPGConfig, OffPolicyConfig, OffPolicyDerived, SACConfig, validate_offpolicy
from fastmarl.config.ppo import Derived, PPOConfig, TrainConfig, resolve
from fastmarl.config.q import ALGO_DEFAULTS, QConfig, QDerived, validate_q_config
from fastmarl.config.tabular import TabularConfig

# config family (AlgoSpec.family) -> its config class
FAMILIES: dict[str, type] = {"ppo": TrainConfig, "happo": HAPPOTrainConfig, "q": QConfig, "sac": SACConfig,
                             "ddpg": DDPGConfig}
assert {s.family for s in ALGORITHMS.values()} <= set(FAMILIES), "every algorithm's family needs a config class"

RunConfig = TrainConfig | HAPPOTrainConfig | QConfig | SACConfig | DDPGConfig  # the configs of a `fastmarl train` run


def config_class(algo: str) -> type:
    """The config class of algorithm ``algo`` (ConfigError with the closest name if unknown)."""
    return FAMILIES[algo_spec(algo).family]


def config_from_saved(d: Any) -> RunConfig:
    """A run's config from its saved dict (``config.json``): the class its ``algo`` names."""
    if not isinstance(d, dict):
        raise ConfigError(f"a run config is a mapping, got {type(d).__name__}")
    if "algo" not in d:
        raise ConfigError("the saved config names no algo; choose one of " + ", ".join(ALGORITHMS))
    return config_class(d["algo"]).from_dict(d)


__all__ = [
    "ALGORITHMS", "ALGO_DEFAULTS", "DEFAULT_ALGO", "EVAL_SEED_OFFSET", "FAMILIES", "AlgoSpec", "ConfigError",
    "DDPGConfig", "Derived", "EnvKwargs", "HAPPOConfig", "HAPPOTrainConfig", "OffPolicyConfig", "OffPolicyDerived",
    "PPOConfig", "QConfig", "QDerived", "RunConfig", "SACConfig", "StepCount", "TabularConfig", "applicable_algorithms",
    "validate_offpolicy", "TrainConfig", "algo_spec", "check_at_least", "check_env_settings", "check_finite",
    "check_int", "check_positive", "check_run", "check_unit", "config_class", "config_from_dict", "config_from_saved",
    "config_key_kind", "flag_names", "parse_env_kwargs", "resolve", "resolve_happo", "validate_q_config", "with_flags",
]
