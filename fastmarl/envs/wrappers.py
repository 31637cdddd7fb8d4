"""Env wrappers. ``Discretizer`` / ``DiscretizeObservation``: observations -> table indices.

Tabular methods (:mod:`fastmarl.algos.tabular`) index a table with one integer
per observation. A :class:`Discretizer` maps observations ``(..., D)`` to indices
``(...,)`` in ``[0, num_states)``, in one of three ways:

- ``"bins"``: continuous features, ``bins[d]`` equal-width bins between
  ``low[d]`` and ``high[d]`` per feature (values outside are clipped into the
  first / last bin), combined in mixed radix (feature 0 most significant);
- ``"integer"``: features that already take integer values in ``[low, high]``
  (a discrete-observation env): one bin per value;
- ``"onehot"``: the observation is a one-hot vector of length D; its index.

A table holds ``num_states * num_actions`` entries per agent (or shared):
:func:`check_table_size` warns above ``warn_entries`` (10M by default) and
raises when the table cannot exist (more indices than int64 holds, or above
``max_entries``), saying what to change.

``DiscretizeObservation(env, ...)`` is a VecEnv whose observations are the
index itself, ``(E, A_g, 1)`` floats holding integers, with an integer Box
``[0, num_states - 1]`` observation space, so any tabular learner (ours with
``obs_encoding="integer"``) reads them directly.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import (
    EnvSpec,
    GroupSpec,
    TimeStep,
    check_known_keys,
    env_state_dict,
    load_env_state_dict,
    restrict_teams,
)

Encoding = Literal["bins", "integer", "onehot"]
WARN_ENTRIES = 10_000_000
MAX_ENTRIES = 2**31  # 8 GiB of float32: beyond this a table is not a sensible tool
MAX_INDEX = 2**62  # indices must fit in int64 with room for (table, state, action) flattening


class TableTooLargeError(ValueError):
    """The requested discretization cannot be represented as a table."""


def check_table_size(num_states: int, num_actions: int = 1, num_tables: int = 1, warn_entries: int = WARN_ENTRIES,
                     max_entries: int = MAX_ENTRIES, what: str = "Q-table") -> int:
    """Number of entries ``num_tables * num_states * num_actions``; warns above
    ``warn_entries``, raises TableTooLargeError above ``max_entries``."""
    entries = int(num_tables) * int(num_states) * int(num_actions)
    if num_states >= MAX_INDEX or entries > max_entries:
        raise TableTooLargeError(
            f"a {what} of {num_tables} x {num_states:,} states x {num_actions} actions = {entries:.3g} entries "
            f"cannot be allocated (limit {max_entries:.3g}); use fewer bins per feature, tighter bounds, fewer "
            "features, or a function approximator (fastmarl.algos.q_learning)")
    if entries > warn_entries:
        warnings.warn(f"the {what} has {entries:,} entries ({4 * entries / 2**20:,.0f} MiB as float32) and most states "
                      "will never be visited; consider fewer bins", stacklevel=2)
    return entries


def _per_feature(value, D: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (D,)) if np.ndim(value) == 0 else \
        np.asarray(value, dtype=np.float64)
    if arr.shape != (D,):
        raise ValueError(f"{name} must be a number or a sequence of {D} numbers (one per observation feature), "
                         f"got {len(arr)} values")
    return arr


class Discretizer:
    """``obs (..., D)`` -> ``index (...,)`` long in ``[0, num_states)``; see the module docstring.

    Args:
        obs_dim: D, features per observation.
        encoding: ``"bins"``, ``"integer"`` or ``"onehot"``.
        bins: bins per feature (``"bins"`` only), an int or D ints.
        low, high: bounds per feature (``"bins"`` and ``"integer"``), numbers or D numbers.
    """

    def __init__(self, obs_dim: int, encoding: Encoding = "bins", bins: int | Sequence[int] | None = None,
                 low: float | Sequence[float] | None = None, high: float | Sequence[float] | None = None):
        D = int(obs_dim)
        if D < 1:
            raise ValueError(f"obs_dim must be >= 1, got {obs_dim}")
        self.obs_dim, self.encoding = D, encoding
        if encoding == "onehot":
            self.num_states = D
            self.bins = None
            return
        if encoding not in ("bins", "integer"):
            raise ValueError(f"encoding must be 'bins', 'integer' or 'onehot', got {encoding!r}")
        if low is None or high is None:
            raise ValueError(f"encoding={encoding!r} needs low and high bounds per feature")
        lo, hi = _per_feature(low, D, "low"), _per_feature(high, D, "high")
        bad = [d for d in range(D) if not (np.isfinite(lo[d]) and np.isfinite(hi[d]))]
        if bad:
            raise ValueError(f"observation feature(s) {bad} are unbounded ([{lo[bad[0]]}, {hi[bad[0]]}]); a table "
                             "needs finite bounds: pass low=/high= (values outside are clipped)")
        if np.any(hi < lo) or (encoding == "bins" and np.any(hi <= lo)):
            d = int(np.argmax(hi <= lo))
            raise ValueError(f"feature {d}: high ({hi[d]}) must be greater than low ({lo[d]})")
        if encoding == "integer":
            if np.any(lo != np.round(lo)) or np.any(hi != np.round(hi)):
                raise ValueError("encoding='integer' needs integer bounds low/high (the values each feature takes)")
            n_bins = (hi - lo + 1).astype(np.int64)
        else:
            if bins is None:
                raise ValueError("encoding='bins' needs bins= (an int, or one int per feature)")
            n_bins = np.asarray(np.broadcast_to(np.asarray(bins), (D,)) if np.ndim(bins) == 0 else bins)
            if n_bins.shape != (D,) or not np.issubdtype(n_bins.dtype, np.integer) or np.any(n_bins < 1):
                raise ValueError(f"bins must be a positive int or {D} positive ints (one per feature), got {bins!r}")
        self.bins = [int(b) for b in n_bins]
        self.num_states = math.prod(self.bins)  # Python int: exact, no overflow
        if self.num_states >= MAX_INDEX:
            raise TableTooLargeError(f"{' x '.join(map(str, self.bins))} = {self.num_states:.3g} states cannot be "
                                     "indexed (limit 2^62); use fewer bins or features")
        self.low, self.high = lo, hi
        # mixed radix, feature 0 most significant
        radix = [math.prod(self.bins[d + 1:]) for d in range(D)]
        self._tensors: dict[tuple, tuple[Tensor, ...]] = {}
        self._radix = radix

    @classmethod
    def for_space(cls, space: gym.spaces.Box, encoding: Encoding = "bins", bins: int | Sequence[int] | None = None,
                  low=None, high=None) -> "Discretizer":
        """Bounds default to the space's (they must then be finite)."""
        D = int(np.prod(space.shape))
        return cls(D, encoding, bins, space.low.reshape(-1) if low is None else low,
                   space.high.reshape(-1) if high is None else high)

    def _consts(self, device: torch.device) -> tuple[Tensor, ...]:
        key = (device.type, device.index)
        if key not in self._tensors:
            f64 = dict(device=device, dtype=torch.float64)
            self._tensors[key] = (torch.tensor(self.low, **f64), torch.tensor(self.high, **f64),
                                  torch.tensor(self.bins, device=device, dtype=torch.long),
                                  torch.tensor(self._radix, device=device, dtype=torch.long))
        return self._tensors[key]

    def bin_indices(self, obs: Tensor) -> Tensor:
        """Per-feature bin (..., D) long (``"bins"`` and ``"integer"`` encodings)."""
        low, high, bins, _ = self._consts(obs.device)
        x = obs.double()
        if self.encoding == "integer":
            idx = torch.round(x - low).long()
        else:
            idx = torch.floor((x - low) / (high - low) * bins).long()
        return torch.minimum(idx.clamp_min(0), bins - 1)

    def __call__(self, obs: Tensor) -> Tensor:
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"expected observations with {self.obs_dim} features, got shape {tuple(obs.shape)}")
        if self.encoding == "onehot":
            return obs.argmax(-1)
        return (self.bin_indices(obs) * self._consts(obs.device)[3]).sum(-1)

    def __repr__(self) -> str:
        return f"Discretizer(encoding={self.encoding!r}, bins={self.bins}, num_states={self.num_states})"


class DiscretizeObservation:
    """A VecEnv whose observations are table indices ``(E, A_g, 1)`` (floats holding integers).

    ``discretizers`` maps every group to a :class:`Discretizer` (or pass one for
    all groups). ``state()``, rewards, masks and everything else pass through.
    ``index(obs)`` gives the long indices ``(E, A_g)`` of raw observations.
    """

    def __init__(self, env, discretizers: Discretizer | dict[str, Discretizer],
                 warn_entries: int = WARN_ENTRIES):
        spec: EnvSpec = env.spec
        if isinstance(discretizers, Discretizer):
            discretizers = {g: discretizers for g in spec.groups}
        missing = [g for g in spec.groups if g not in discretizers]
        if missing:
            raise ValueError(f"no discretizer for group(s) {missing}; give one per group {list(spec.groups)}")
        self.env, self.discretizers = env, discretizers
        self.num_envs, self.device = env.num_envs, env.device
        groups = {}
        self._dtype: dict[str, torch.dtype] = {}
        for name, g in spec.groups.items():
            d = discretizers[name]
            if d.obs_dim != g.obs_dim:
                raise ValueError(f"group {name!r}: the discretizer expects {d.obs_dim} features, "
                                 f"the env has {g.obs_dim}")
            if g.discrete:
                check_table_size(d.num_states, g.action_dim, warn_entries=warn_entries,
                                 what=f"table of group {name!r}")
            # float32 holds integers exactly only below 2^24
            small = d.num_states <= 2**24
            self._dtype[name] = torch.float32 if small else torch.float64
            space = gym.spaces.Box(0.0, float(d.num_states - 1), shape=(1,), dtype=np.float32 if small else np.float64)
            groups[name] = GroupSpec(name, g.agents, space, g.action_space)
        self.spec = EnvSpec(spec.env_id, groups, spec.state_dim, spec.max_episode_steps, spec.has_action_mask,
                            spec.has_alive_mask, spec.teams)
        self.metadata = getattr(env, "metadata", {})

    @property
    def num_states(self) -> dict[str, int]:
        return {g: d.num_states for g, d in self.discretizers.items()}

    def index(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Raw observations group -> (E, A_g, D) to indices group -> (E, A_g) long."""
        return {g: self.discretizers[g](o) for g, o in obs.items()}

    def _wrap(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        return {g: self.discretizers[g](o)[..., None].to(self._dtype[g]) for g, o in obs.items()}

    def _ts(self, ts: TimeStep) -> TimeStep:
        obs = self._wrap(ts.obs)
        final = obs if ts.final_obs is ts.obs else self._wrap(ts.final_obs)
        return TimeStep(obs=obs, reward=ts.reward, terminated=ts.terminated, truncated=ts.truncated, final_obs=final,
                        final_state=ts.final_state, action_mask=ts.action_mask, alive=ts.alive, info=ts.info)

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        return self._ts(self.env.reset(seed=seed, mask=mask))

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        return self._ts(self.env.step(actions))

    def state(self) -> Tensor:
        return self.env.state()

    def state_dict(self) -> dict[str, Any] | None:
        return env_state_dict(self.env)  # the observations are a function of the wrapped env's

    def load_state_dict(self, s: dict[str, Any]) -> None:
        if not load_env_state_dict(self.env, s):
            raise ValueError("the wrapped env's state could not be restored")

    def render(self, env_index: int = 0) -> np.ndarray:
        return self.env.render(env_index)

    def close(self) -> None:
        if hasattr(self.env, "close"):
            self.env.close()


def select_groups(ts: TimeStep, groups) -> TimeStep:
    """The part of ``ts`` that belongs to ``groups`` (an iterable of group names);
    ``terminated``, ``truncated``, ``final_state`` and ``info`` are shared."""
    keep = list(groups)
    pick = lambda d: None if d is None else {g: d[g] for g in keep if g in d}  # noqa: E731
    obs = pick(ts.obs)
    final = obs if ts.final_obs is ts.obs else pick(ts.final_obs)
    return TimeStep(obs=obs, reward=pick(ts.reward), terminated=ts.terminated, truncated=ts.truncated,
                    final_obs=final, final_state=ts.final_state, action_mask=pick(ts.action_mask),
                    alive=pick(ts.alive), info=ts.info)


class ScriptedGroups:
    """A VecEnv in which fixed policies play some groups; only the others act.

    ``ScriptedGroups(env, {"agent": prey_policy})`` exposes every group of
    ``env`` except ``agent``: ``step`` takes actions for the remaining groups,
    asks each scripted policy (the :class:`~fastmarl.envs.api.Policy` protocol:
    ``act(ts, carry, deterministic, generator)``)
    for its group's actions on the observations of the current step, and steps
    ``env`` with all of them. Returned TimeSteps hold the remaining groups only;
    ``last_timestep`` is the inner env's full last TimeStep (e.g. the scripted
    group's rewards). ``state()`` is the inner env's (all groups).

    A policy's recurrent carry is restarted where an episode begins (it sees
    ``ts.done`` True there, as in evaluation), including after ``reset``.
    """

    def __init__(self, env, policies: dict, deterministic: bool = True, seed: int = 0):
        spec: EnvSpec = env.spec
        check_known_keys(policies, spec.groups, f"group of {spec.env_id}")
        if not policies:
            raise ValueError("give at least one group to script ({group: policy}); otherwise use the env itself")
        kept = [g for g in spec.groups if g not in policies]
        if not kept:
            raise ValueError(f"every group of {spec.env_id} would be scripted; leave at least one to act")
        for g, p in policies.items():
            if not (callable(getattr(p, "act", None)) and callable(getattr(p, "initial_carry", None))):
                raise TypeError(f"the policy for group {g!r} needs act() and initial_carry() (the Policy protocol "
                                f"of fastmarl.envs.api), got {type(p).__name__}")
        self.env, self.policies, self.deterministic = env, dict(policies), deterministic
        self.num_envs, self.device = env.num_envs, env.device
        self.spec = EnvSpec(spec.env_id, {g: spec.groups[g] for g in kept}, spec.state_dim, spec.max_episode_steps,
                            spec.has_action_mask, spec.has_alive_mask, restrict_teams(spec.teams, kept))
        self.metadata = getattr(env, "metadata", {})
        self.generator = torch.Generator(device=env.device)
        self.generator.manual_seed(seed)
        self._carry = {g: p.initial_carry(env.num_envs) for g, p in self.policies.items()}
        self._last: TimeStep | None = None
        self._fresh: Tensor | None = None  # (E,) envs whose current obs begin an episode

    @property
    def last_timestep(self) -> TimeStep:
        """The inner env's last TimeStep (every group)."""
        if self._last is None:
            raise RuntimeError("call reset() first")
        return self._last

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        ts = self.env.reset(seed=seed, mask=mask)
        if mask is None:
            self._carry = {g: p.initial_carry(self.num_envs) for g, p in self.policies.items()}
            fresh = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        else:
            fresh = mask.to(self.device) if self._fresh is None else (self._fresh | mask.to(self.device))
        self._last, self._fresh = ts, fresh
        return select_groups(ts, self.spec.groups)

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        if self._last is None:
            raise RuntimeError("call reset() before step()")
        missing = [g for g in self.spec.groups if g not in actions]
        extra = [g for g in actions if g not in self.spec.groups]
        if missing or extra:
            raise ValueError(f"ScriptedGroups.step expects actions for {list(self.spec.groups)} only (scripted: "
                             f"{list(self.policies)}); missing {missing}, unexpected {extra}")
        last = self._last
        # the policies see done=True where the current observation begins an episode
        view = TimeStep(obs=last.obs, reward=last.reward, terminated=self._fresh,
                        truncated=torch.zeros_like(self._fresh), final_obs=last.final_obs,
                        final_state=last.final_state, action_mask=last.action_mask, alive=last.alive, info=last.info)
        merged = dict(actions)
        for g, p in self.policies.items():
            out, self._carry[g] = p.act(select_groups(view, [g]), self._carry[g], self.deterministic, self.generator)
            merged[g] = out[g]
        ts = self.env.step(merged)
        self._last, self._fresh = ts, ts.done
        return select_groups(ts, self.spec.groups)

    def state(self) -> Tensor:
        return self.env.state()

    def render(self, env_index: int = 0) -> np.ndarray:
        return self.env.render(env_index)

    def close(self) -> None:
        if hasattr(self.env, "close"):
            self.env.close()
