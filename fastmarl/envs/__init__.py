"""Batched multi-agent environments (see :mod:`fastmarl.envs.api`)."""

from fastmarl.envs.api import ActionError, EnvSpec, GroupSpec, TimeStep, VecEnv
from fastmarl.envs.checker import EnvCheckError, check_env
from fastmarl.envs.registry import list_envs, make, register

__all__ = ["ActionError", "EnvSpec", "GroupSpec", "TimeStep", "VecEnv", "make", "register", "list_envs", "check_env",
           "EnvCheckError"]
