"""Reference policies of an env, scored next to trained ones (the learning curve's reference lines).

``reference_policies(env)`` gives ``{"random": RandomPolicy}`` for every env, plus ``"scripted"``
where the env has a scripted controller: :class:`~fastmarl.envs.scripted.SpreadScripted` for
``simple_spread_v3``, and for the application scenarios the ``baseline_policy(spec)`` their module
defines (the scenario contract of ``experiments/scenario_report.py``; it may take the env's kwargs).
A wrapped env (e.g. a message channel) or settings a controller does not support get no scripted
policy rather than a wrong one.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from fastmarl.envs.api import Policy
from fastmarl.envs.scripted import RandomPolicy, SpreadScripted


def scripted_policy(env: Any, env_kwargs: dict[str, Any] | None = None) -> Policy | None:
    """The env's scripted controller (see the module docstring), or None."""
    spec, env_kwargs = env.spec, dict(env_kwargs or {})
    if spec.env_id == "simple_spread_v3":
        try:
            return SpreadScripted(spec)
        except ValueError:  # partial observations, or a wrapper that changed them
            return None
    for obj in (getattr(env, "scenario", None), env):
        if obj is None:
            continue
        fn = getattr(sys.modules.get(type(obj).__module__), "baseline_policy", None)
        if not callable(fn):
            continue
        params = inspect.signature(fn).parameters
        takes_all = any(p.kind == p.VAR_KEYWORD for p in params.values())
        kwargs = env_kwargs if takes_all else {k: v for k, v in env_kwargs.items() if k in params}
        try:
            return fn(spec, **kwargs)
        except (ValueError, TypeError, KeyError):  # a spec the controller was not written for
            return None
    return None


def reference_policies(env: Any, env_kwargs: dict[str, Any] | None = None) -> dict[str, Policy]:
    """``{"random": ..., "scripted": ...}`` (scripted only where the env has one)."""
    out: dict[str, Policy] = {"random": RandomPolicy(env.spec)}
    scripted = scripted_policy(env, env_kwargs)
    if scripted is not None:
        out["scripted"] = scripted
    return out
