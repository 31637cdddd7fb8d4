"""fastmarl envs as PettingZoo envs.

``to_parallel_env(env_or_id)`` / ``to_aec_env(env_or_id)``: one fastmarl env
(``num_envs=1``) seen as a standard PettingZoo ``ParallelEnv`` / ``AECEnv``:
dicts keyed by agent name of numpy arrays (observations ``float32``, discrete
actions ints). It passes PettingZoo's own API and seed tests.

The other way, ``from_pettingzoo(env_fn, num_envs)`` (any PettingZoo env as a
batched fastmarl env), is :mod:`fastmarl.envs.pz_vecenv`. Dicts keyed by agent
name exist only in these two modules.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec
from torch import Tensor

from fastmarl.envs.api import EnvSpec, TimeStep, VecEnv, check_known_keys
from fastmarl.envs.registry import make

__all__ = ["to_parallel_env", "to_aec_env", "FastMARLParallelEnv"]


# ---------------------------------------------------------------------------
# fastmarl -> PettingZoo
# ---------------------------------------------------------------------------


class FastMARLParallelEnv(ParallelEnv):
    """A fastmarl env with ``num_envs == 1`` behind PettingZoo's ``ParallelEnv`` API.

    Episodes follow PettingZoo: when the episode ends, ``step`` returns the last
    observations (the batched env's ``final_obs``), ``agents`` becomes empty and
    the user calls ``reset``. The batched env's auto-reset is hidden: the first
    state of the next episode it already drew is what ``reset()`` (without a
    seed) returns, so a PettingZoo loop sees exactly the trajectories of the
    batched env. ``reset(seed=s)`` always re-seeds and resets.

    Agents that die mid-episode (envs with an ``alive`` mask) get
    ``terminations[agent] = True`` on the step they die and leave ``agents``.
    Action masks, where the env has them, are in ``infos[agent]["action_mask"]``
    (int8, 1 = legal).
    """

    def __init__(self, env: VecEnv):
        if getattr(env, "num_envs", None) != 1:
            raise ValueError(f"to_parallel_env needs an env with num_envs=1, got num_envs={getattr(env, 'num_envs', None)}")
        self.env = env
        spec: EnvSpec = env.spec
        self.spec = spec
        self.metadata = {"name": spec.env_id, "render_modes": ["rgb_array"], "is_parallelizable": True,
                         "render_fps": getattr(env, "metadata", {}).get("render_fps", 10)}
        self.render_mode = "rgb_array"  # render() always returns an RGB array
        self.possible_agents = list(spec.agents)
        self.agents: list[str] = []
        self._where = {a: (g.name, i) for g in spec.groups.values() for i, a in enumerate(g.agents)}
        # one space object per agent (PettingZoo seeds them per agent)
        self.observation_spaces = {a: copy.deepcopy(spec.groups[g].observation_space) for a, (g, _) in self._where.items()}
        self.action_spaces = {a: copy.deepcopy(spec.groups[g].action_space) for a, (g, _) in self._where.items()}
        if spec.state_dim > 0:
            self.state_space = gym.spaces.Box(-np.inf, np.inf, shape=(spec.state_dim,), dtype=np.float32)
        # filler actions for agents that are not live (their action is ignored)
        self._filler = {}
        for g in spec.groups.values():
            if g.discrete:
                self._filler[g.name] = np.zeros((1, g.num_agents), dtype=np.int64)
            else:
                sp = g.action_space
                fill = np.clip(np.zeros(sp.shape, dtype=sp.dtype), sp.low, sp.high).reshape(-1)
                self._filler[g.name] = np.broadcast_to(fill, (1, g.num_agents, fill.size)).copy()
        self._pending: TimeStep | None = None  # auto-reset TimeStep after an episode end
        self._final_state: np.ndarray | None = None  # state() after an episode end
        self._obs: dict[str, np.ndarray] = {}
        self._mask: dict[str, np.ndarray] | None = None

    # -- spaces ----------------------------------------------------------------
    def observation_space(self, agent: str) -> gym.spaces.Space:
        check_known_keys([agent], self.possible_agents, "agent", KeyError)
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gym.spaces.Space:
        check_known_keys([agent], self.possible_agents, "agent", KeyError)
        return self.action_spaces[agent]

    # -- helpers ---------------------------------------------------------------
    def _load(self, ts: TimeStep, obs: dict[str, Tensor]) -> None:
        """Keep env 0's observations and masks as numpy (float32 / int8 copies)."""
        self._obs = {g: obs[g][0].detach().cpu().numpy().astype(np.float32, copy=True) for g in obs}
        self._mask = None
        if ts.action_mask is not None:
            self._mask = {g: m[0].detach().cpu().numpy().astype(np.int8, copy=True) for g, m in ts.action_mask.items()}

    def _live(self, ts: TimeStep) -> list[str]:
        if ts.alive is None:
            return list(self.possible_agents)
        alive = {g: a[0].detach().cpu().numpy() for g, a in ts.alive.items()}
        return [a for a in self.possible_agents if bool(alive[self._where[a][0]][self._where[a][1]])]

    def _agent_obs(self, agent: str) -> np.ndarray:
        g, i = self._where[agent]
        return self._obs[g][i]

    def _info(self, agent: str) -> dict[str, Any]:
        g, i = self._where[agent]
        if self._mask is not None and g in self._mask:
            return {"action_mask": self._mask[g][i]}
        return {}

    # -- API -------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is None and self._pending is not None:
            ts = self._pending  # the batched env already drew the next episode's start
        else:
            ts = self.env.reset(seed=seed)
        self._pending, self._final_state = None, None
        self._load(ts, ts.obs)
        self.agents = self._live(ts)
        return {a: self._agent_obs(a) for a in self.agents}, {a: self._info(a) for a in self.agents}

    def _group_actions(self, actions: dict[str, Any]) -> dict[str, Tensor]:
        if not isinstance(actions, dict):
            raise TypeError(f"actions must be a dict agent name -> action, got {type(actions).__name__}")
        check_known_keys(actions, self._where, "agent in the actions", KeyError)
        missing = [a for a in self.agents if a not in actions or actions[a] is None]
        if missing:
            raise KeyError(f"no action for live agents {missing}; every agent in env.agents must act")
        arrays = {g: f.copy() for g, f in self._filler.items()}
        for agent in self.agents:  # actions of agents that are not live are ignored
            g, i = self._where[agent]
            a = np.asarray(actions[agent])
            if self.spec.groups[g].discrete:
                if a.size != 1:
                    raise ValueError(f"agent {agent!r}: expected one integer action, got an array of shape {a.shape}")
                arrays[g][0, i] = int(a.reshape(()))
            else:
                want = self.spec.groups[g].action_dim
                if a.size != want:
                    raise ValueError(f"agent {agent!r}: expected a continuous action with {want} values, got shape {a.shape}")
                arrays[g][0, i] = a.reshape(-1)
        return {g: torch.from_numpy(v).to(self.env.device) for g, v in arrays.items()}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("the episode is over (env.agents is empty): call reset() before step()")
        ts = self.env.step(self._group_actions(actions))
        before = self.agents
        ended = bool(ts.done[0])
        self._load(ts, ts.final_obs if ended else ts.obs)
        reward = {g: r[0].detach().cpu().numpy() for g, r in ts.reward.items()}
        if ended:
            term, trunc = bool(ts.terminated[0]), bool(ts.truncated[0])
            terminations = dict.fromkeys(before, term)
            truncations = dict.fromkeys(before, trunc)
            self._pending = ts
            if ts.final_state is not None:
                self._final_state = ts.final_state[0].detach().cpu().numpy().astype(np.float32, copy=True)
            self.agents = []
        else:
            self.agents = self._live(ts)
            still = set(self.agents)
            terminations = {a: a not in still for a in before}  # died this step
            truncations = dict.fromkeys(before, False)
        obs = {a: self._agent_obs(a) for a in before}
        rewards = {a: float(reward[self._where[a][0]][self._where[a][1]]) for a in before}
        infos = {a: self._info(a) for a in before}
        return obs, rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        """Global state (state_dim,) float32; after an episode end, the final state."""
        if self.spec.state_dim == 0:
            raise NotImplementedError(f"{self.spec.env_id} has no global state (spec.state_dim == 0)")
        if self._final_state is not None:
            return self._final_state.copy()
        return self.env.state()[0].detach().cpu().numpy().astype(np.float32, copy=True)

    def render(self) -> np.ndarray:
        """RGB array (H, W, 3) uint8. After an episode end, the batched env has
        already auto-reset, so this shows the next episode's first frame."""
        return self.env.render(0)

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()



def _one_env(env_or_id: Any, make_kwargs: dict[str, Any]) -> VecEnv:
    if isinstance(env_or_id, str):
        n = make_kwargs.pop("num_envs", 1)
        if n != 1:
            raise ValueError(f"a PettingZoo env wraps exactly one env: num_envs must be 1, got {n}")
        return make(env_or_id, num_envs=1, **make_kwargs)
    if make_kwargs:
        raise TypeError(f"keyword arguments {sorted(make_kwargs)} are only accepted with an env id, "
                        "not with an env object")
    return env_or_id


def to_parallel_env(env_or_id: str | VecEnv, **make_kwargs: Any) -> FastMARLParallelEnv:
    """PettingZoo ``ParallelEnv`` over ``make(env_id, num_envs=1, **make_kwargs)``
    (or over a given env with ``num_envs == 1``). See :class:`FastMARLParallelEnv`."""
    return FastMARLParallelEnv(_one_env(env_or_id, dict(make_kwargs)))


def to_aec_env(env_or_id: str | VecEnv, **make_kwargs: Any) -> AECEnv:
    """PettingZoo ``AECEnv``: :func:`to_parallel_env` through PettingZoo's ``parallel_to_aec``."""
    return parallel_to_aec(to_parallel_env(env_or_id, **make_kwargs))
