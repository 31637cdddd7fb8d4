"""Repeated cooperative matrix games: credit-assignment sanity checks.

Every agent picks one of ``n`` actions; all agents receive the same team reward
``payoff[a_0, a_1, ...]``. An episode lasts ``episode_length`` steps (default 1,
the one-shot games of the literature) and then *terminates*: the step index is
part of the observation, so the end is part of the task, not a time limit.

Observation of every agent and the global state: one-hot of the steps taken so
far, ``episode_length + 1`` entries (the last entry is only ever seen in
``final_obs``, the observation after the last step).

The games (rows: agent 0's action, columns: agent 1's):

=====================  ====================================  ====================================
env id                 payoff                                why it is interesting
=====================  ====================================  ====================================
matrix_climbing_v0     [[11, -30, 0], [-30, 7, 6],           optimum (0, 0) guarded by -30 miscoordination;
                       [0, 0, 5]]                            independent learners settle on (1, 1) or (2, 2)
                                                             (Claus & Boutilier, 1998)
matrix_penalty_v0      [[10, 0, k], [0, 2, 0], [k, 0, 10]]   two optima and a penalty ``k <= 0`` (default -100)
                                                             for miscoordinating between them
matrix_monotonic_v0    [[10, 6, 2], [6, 4, 1], [2, 1, 0]]    rows and columns are ordered, so a monotonic
                                                             mixer represents it; IQL, VDN and QMIX all solve it
matrix_nonmonotonic_v0 [[8, -12, -12], [-12, 0, 0],          QTRAN / Weighted-QMIX game: the best
                       [-12, 0, 0]]                          joint action (0, 0) is not representable by a
                                                             monotonic mix of per-agent utilities learned
                                                             from uniform data, so VDN / QMIX tend to miss it
=====================  ====================================  ====================================

``continuous_actions=True`` turns a game into its mixed-strategy version: each
agent's action is a ``Box(0, 1, (n,))`` vector of weights, normalised into a
probability vector (uniform when all weights are 0), and the reward is the
expected payoff under the product of the agents' mixed strategies.

Any payoff tensor with one axis per agent works: ``MatrixGame(payoff, ...)``, or
``fastmarl.make("matrix_custom_v0", payoff=[[1, 0], [0, 1]])`` (that 2x2
coordination game is its default).
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastmarl.envs.api import EnvSpec, GroupSpec, TimeStep, require_reset, reset_mask, validate_actions
from fastmarl.envs.mpe.core import check_kwargs

CLIMBING = [[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]]
MONOTONIC = [[10.0, 6.0, 2.0], [6.0, 4.0, 1.0], [2.0, 1.0, 0.0]]
NONMONOTONIC = [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]]
COORDINATION = [[1.0, 0.0], [0.0, 1.0]]  # matrix_custom_v0's default payoff


def penalty_payoff(k: float = -100.0) -> list[list[float]]:
    """The penalty game of Claus & Boutilier (1998); ``k <= 0``."""
    return [[10.0, 0.0, k], [0.0, 2.0, 0.0], [k, 0.0, 10.0]]


GROUP = "agent"


class MatrixGame:
    """``num_envs`` copies of a repeated cooperative matrix game (see the module docstring).

    Shapes: obs ``{"agent": (E, A, T + 1)}``, reward ``{"agent": (E, A)}`` (the
    same team reward for every agent), actions ``{"agent": (E, A)}`` integers in
    ``[0, n)`` (or ``(E, A, n)`` weights with ``continuous_actions``), state
    ``(E, T + 1)``; ``A`` = ``payoff.ndim`` agents, ``T`` = ``episode_length``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(self, payoff: Sequence | np.ndarray | Tensor, num_envs: int = 1, device: str | torch.device = "cpu",
                 seed: int | None = None, episode_length: int = 1, continuous_actions: bool = False,
                 dtype: torch.dtype = torch.float32, validate: bool = True, render_mode: str | None = None,
                 env_id: str = "matrix_custom_v0"):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if not isinstance(episode_length, int) or isinstance(episode_length, bool) or episode_length < 1:
            raise ValueError(f"{env_id}: episode_length must be a positive int, got {episode_length!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported: use None or 'rgb_array'")
        p = torch.as_tensor(np.asarray(payoff, dtype=np.float64))
        if p.dim() < 1 or p.numel() < 1 or len(set(p.shape)) != 1:
            raise ValueError(f"{env_id}: payoff must have one axis per agent, all of the same length (number of "
                             f"actions), e.g. shape (3, 3) for two agents with 3 actions; got shape {tuple(p.shape)}")
        if not bool(torch.isfinite(p).all()):
            raise ValueError(f"{env_id}: payoff must be finite")
        self.device = torch.empty(0, device=device).device
        self.num_envs, self.dtype, self.validate = num_envs, dtype, validate
        self.episode_length, self.render_mode = episode_length, render_mode
        self.continuous_actions = bool(continuous_actions)
        self.num_agents, self.num_actions = p.dim(), p.shape[0]
        self.payoff = p.to(self.device, dtype)  # (n,) * A
        self._flat_payoff = self.payoff.reshape(-1)
        # flat index of a joint action: sum_i a_i * n^(A-1-i)
        self._radix = torch.tensor([self.num_actions ** (self.num_agents - 1 - i) for i in range(self.num_agents)],
                                   device=self.device)
        n, A, T = self.num_actions, self.num_agents, episode_length
        act_space = (gym.spaces.Box(0.0, 1.0, shape=(n,), dtype=np.float32) if self.continuous_actions
                     else gym.spaces.Discrete(n))
        group = GroupSpec(name=GROUP, agents=tuple(f"agent_{i}" for i in range(A)),
                          observation_space=gym.spaces.Box(0.0, 1.0, shape=(T + 1,), dtype=np.float32),
                          action_space=act_space)
        self.spec = EnvSpec(env_id=env_id, groups={GROUP: group}, state_dim=T + 1, max_episode_steps=T)
        self._gen = torch.Generator(device=self.device)  # the games are deterministic; kept for the API
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self._t = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._eye = torch.eye(T + 1, device=self.device, dtype=dtype)
        self._last_action = torch.full((num_envs, A), -1, dtype=torch.long, device=self.device)  # for render

    # -- facts about the game ---------------------------------------------------
    @property
    def optimal_return(self) -> float:
        """Best achievable episode return (per agent): ``episode_length * max(payoff)``."""
        return float(self.payoff.max()) * self.episode_length

    def optimal_actions(self) -> list[tuple[int, ...]]:
        """Every joint action achieving ``max(payoff)``."""
        best = self.payoff == self.payoff.max()
        return [tuple(int(i) for i in idx) for idx in torch.nonzero(best).tolist()]

    def joint_payoff(self, actions: Tensor) -> Tensor:
        """Team reward of discrete joint actions (..., A) -> (...)."""
        return self._flat_payoff[(actions.long() * self._radix).sum(-1)]

    # -- the VecEnv protocol --------------------------------------------------------
    def _obs(self) -> dict[str, Tensor]:
        o = self._eye[self._t]  # (E, T + 1)
        return {GROUP: o[:, None, :].expand(-1, self.num_agents, -1)}

    def state(self) -> Tensor:
        """(E, T + 1): one-hot of the steps taken in the current episode."""
        return self._eye[self._t]

    def reset(self, seed: int | None = None, mask: Tensor | None = None) -> TimeStep:
        """Reset all envs (mask None) or those where ``mask`` (E,) is True."""
        if seed is not None:
            self._gen.manual_seed(int(seed))
        E = self.num_envs
        if mask is None:
            self._t = torch.zeros_like(self._t)
            self._last_action.fill_(-1)
        else:
            mask = reset_mask(mask, E, self.device)
            self._t = torch.where(mask, 0, self._t)
            self._last_action = torch.where(mask[:, None], -1, self._last_action)
        self._was_reset = True
        obs = self._obs()
        f = torch.zeros(E, dtype=torch.bool, device=self.device)
        zeros = torch.zeros(E, self.num_agents, device=self.device, dtype=self.dtype)
        return TimeStep(obs=obs, reward={GROUP: zeros}, terminated=f, truncated=f.clone(), final_obs=obs)

    def step(self, actions: dict[str, Tensor]) -> TimeStep:
        """Pay every env its team reward, advance time, auto-reset ended episodes."""
        require_reset(self)
        if self.validate:
            validate_actions(self.spec, actions, self.num_envs, self.device)
        a = actions[GROUP]
        if self.continuous_actions:
            r = self._expected_payoff(a.to(self.dtype))
            self._last_action = a.argmax(-1)
        else:
            r = self.joint_payoff(a)
            self._last_action = a.long().clone()
        reward = r[:, None].expand(-1, self.num_agents).contiguous()
        self._t = self._t + 1
        term = self._t >= self.episode_length
        trunc = torch.zeros_like(term)
        final_obs, final_state = self._obs(), None
        obs = final_obs
        if bool(term.any()):
            final_state = self.state()
            self._t = torch.where(term, 0, self._t)
            obs = self._obs()
        return TimeStep(obs=obs, reward={GROUP: reward}, terminated=term, truncated=trunc,
                        final_obs=final_obs, final_state=final_state)

    def _expected_payoff(self, w: Tensor) -> Tensor:
        """Weights (E, A, n) -> expected payoff (E,) under the product of mixed strategies."""
        total = w.sum(-1, keepdim=True)
        p = torch.where(total > 0, w / total.clamp_min(1e-12), 1.0 / self.num_actions)
        out = self.payoff.expand(self.num_envs, *self.payoff.shape)
        for i in range(self.num_agents):  # contract one agent axis at a time (A is tiny)
            out = torch.einsum("en,en...->e...", p[:, i], out)
        return out

    def render(self, env_index: int = 0, cell: int = 32) -> np.ndarray:
        """RGB image of the payoff table (red: low, green: high) with the last joint
        action of env ``env_index`` framed in black. Agents beyond the first index
        columns in row-major order."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env_index {env_index} out of range for num_envs={self.num_envs}")
        n, A = self.num_actions, self.num_agents
        table = self.payoff.detach().cpu().double().numpy().reshape(n, -1) if A > 1 else \
            self.payoff.detach().cpu().double().numpy().reshape(1, n)
        lo, hi = table.min(), table.max()
        u = (table - lo) / (hi - lo) if hi > lo else np.full_like(table, 0.5)
        rgb = np.stack([1.0 - u, u, np.full_like(u, 0.25)], -1)  # (rows, cols, 3)
        img = (np.kron(rgb, np.ones((cell, cell, 1))) * 230).astype(np.uint8)
        img[::cell, :] = 255
        img[:, ::cell] = 255
        last = self._last_action[env_index].cpu().tolist()
        if last[0] >= 0:
            if A > 1:
                r, c = last[0], int(np.ravel_multi_index(last[1:], (n,) * (A - 1)))
            else:
                r, c = 0, last[0]
            y0, x0 = r * cell, c * cell
            img[y0:y0 + 3, x0:x0 + cell] = 0
            img[y0 + cell - 3:y0 + cell, x0:x0 + cell] = 0
            img[y0:y0 + cell, x0:x0 + 3] = 0
            img[y0:y0 + cell, x0 + cell - 3:x0 + cell] = 0
        return np.ascontiguousarray(img)

    def close(self) -> None:
        pass

    # -- exact resume (fastmarl.train.checkpoint uses these when present) ----------
    def state_dict(self) -> dict[str, Any]:
        return {"t": self._t.clone(), "last_action": self._last_action.clone(), "generator": self._gen.get_state()}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self._t = s["t"].to(self.device)
        self._last_action = s["last_action"].to(self.device)
        self._gen.set_state(s["generator"])
        self._was_reset = True


# -- registry factories ----------------------------------------------------------------

_ENV_KWARGS = dict(episode_length=1, continuous_actions=False, dtype=torch.float32, validate=True, render_mode=None)

GAMES: dict[str, tuple[Any, dict[str, Any], str]] = {
    # env id: (payoff or payoff function of the game kwargs, game kwargs and defaults, description)
    "matrix_climbing_v0": (CLIMBING, {}, "climbing game: optimum guarded by heavy miscoordination penalties"),
    "matrix_penalty_v0": (penalty_payoff, {"k": -100.0}, "penalty game: two optima, penalty k for mixing them"),
    "matrix_monotonic_v0": (MONOTONIC, {}, "monotonic 3x3 game every value-decomposition method solves"),
    "matrix_nonmonotonic_v0": (NONMONOTONIC, {}, "non-monotonic 3x3 game (QTRAN/WQMIX) that defeats monotonic mixing"),
    "matrix_custom_v0": (None, {"payoff": COORDINATION}, "any cooperative matrix game: payoff=[[...]], an axis per agent"),
}


def matrix_factory(env_id: str):
    """Factory for ``fastmarl.make``: game kwargs (e.g. ``k`` of the penalty game) plus
    ``episode_length``, ``continuous_actions``, ``dtype``, ``validate``, ``render_mode``."""
    payoff, game_kw, _ = GAMES[env_id]

    def factory(num_envs: int = 1, device: str | torch.device = "cpu", seed: int | None = None,
                **kwargs: Any) -> MatrixGame:
        merged = check_kwargs(env_id, kwargs, {**game_kw, **_ENV_KWARGS})
        env_kw = {k: merged.pop(k) for k in _ENV_KWARGS}
        if env_id == "matrix_penalty_v0" and not merged["k"] <= 0:
            raise ValueError(f"{env_id}: the penalty k must be <= 0, got {merged['k']!r}")
        table = payoff(**merged) if callable(payoff) else (payoff if payoff is not None else merged["payoff"])
        return MatrixGame(table, num_envs=num_envs, device=device, seed=seed, env_id=env_id, **env_kw)

    return factory
