"""A tiny batched env with known values, for the PPO/GAE tests (and its own API check).

``TickEnv``: two groups.

- ``agent``: 2 agents, ``Discrete(3)``, action masks (agent 1 may not take
  action 2); observation ``[t, env_index]`` where ``t`` counts the steps of the
  current episode; reward ``1`` if the action is 0, else 0.
- ``box`` (optional): 1 agent, ``Box(-1, 1, (2,))``; observation ``[t, env_index]``;
  reward ``-sum |a - 0.5|``.

Env ``e`` ends its episode when ``t`` reaches ``limits[e]``: by termination if
``terminal[e]`` else by truncation (time limit). ``state()`` is
``[t, env_index, 1]`` (or absent with ``state_dim=0``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from fastmarl.envs.api import EnvSpec, GroupSpec, TimeStep


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is much faster than two on a busy 2-core machine
    (import this fixture into a test module to use it there)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class TickEnv:
    def __init__(self, num_envs: int = 4, limits=None, terminal=None, with_box: bool = True, state: bool = True,
                 masks: bool = True):
        self.num_envs, self.device = num_envs, torch.device("cpu")
        E = num_envs
        self.limits = torch.as_tensor(limits if limits is not None else [3] * E)
        self.terminal = torch.as_tensor(terminal if terminal is not None else [False] * E, dtype=torch.bool)
        box = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        groups = {"agent": GroupSpec("agent", ("agent_0", "agent_1"), box, gym.spaces.Discrete(3))}
        if with_box:
            groups["box"] = GroupSpec("box", ("box_0",), box, gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
        self.spec = EnvSpec("tick_v0", groups, state_dim=3 if state else 0, max_episode_steps=int(self.limits.max()),
                            has_action_mask=masks)
        self.t = torch.zeros(E)
        self.idx = torch.arange(E, dtype=torch.float32)

    def _obs(self, t):
        return {n: torch.stack([t, self.idx], -1)[:, None].expand(-1, g.num_agents, 2).clone()
                for n, g in self.spec.groups.items()}

    def _mask(self):
        if not self.spec.has_action_mask:
            return None
        m = torch.ones(self.num_envs, 2, 3, dtype=torch.bool)
        m[:, 1, 2] = False
        return {"agent": m}

    def reset(self, seed=None, mask=None):
        self.t = torch.where(mask, 0.0, self.t) if mask is not None else torch.zeros(self.num_envs)
        obs = self._obs(self.t)
        f = torch.zeros(self.num_envs, dtype=torch.bool)
        rew = {n: torch.zeros(self.num_envs, g.num_agents) for n, g in self.spec.groups.items()}
        return TimeStep(obs, rew, f, f.clone(), obs, action_mask=self._mask())

    def step(self, actions):
        a = actions["agent"]
        assert not bool((a[:, 1] == 2).any()), "masked action taken"
        rew = {"agent": (a == 0).float()}
        if "box" in actions:
            rew["box"] = -(actions["box"] - 0.5).abs().sum(-1)
        t = self.t + 1
        ended = t >= self.limits
        term, trunc = ended & self.terminal, ended & ~self.terminal
        final_obs = self._obs(t)
        final_state = None
        if bool(ended.any()):
            final_state = self._state(t)
            t = torch.where(ended, 0.0, t)
            obs = self._obs(t)
        else:
            obs = final_obs
        self.t = t
        return TimeStep(obs, rew, term, trunc, final_obs, final_state, action_mask=self._mask())

    def _state(self, t):
        return torch.stack([t, self.idx, torch.ones_like(t)], -1)

    def state(self):
        return self._state(self.t)

    def render(self, env_index: int = 0):
        return np.zeros((8, 8, 3), np.uint8)

    def state_dict(self):
        return {"t": self.t.clone()}

    def load_state_dict(self, s):
        self.t = s["t"].clone()


def test_tick_env_follows_the_api():
    env = TickEnv(num_envs=2, limits=[2, 3], terminal=[True, False])
    ts = env.reset()
    assert ts.obs["agent"].shape == (2, 2, 2) and ts.obs["box"].shape == (2, 1, 2)
    acts = {"agent": torch.zeros(2, 2, dtype=torch.long), "box": torch.zeros(2, 1, 2)}
    env.step(acts)
    ts = env.step(acts)  # env 0 terminates after 2 steps and resets
    assert ts.terminated.tolist() == [True, False] and ts.truncated.tolist() == [False, False]
    assert ts.final_obs["agent"][0, 0, 0] == 2 and ts.obs["agent"][0, 0, 0] == 0
    ts = env.step(acts)  # env 1 is truncated after 3
    assert ts.terminated.tolist() == [False, False] and ts.truncated.tolist() == [False, True]
    assert ts.final_state[1].tolist() == [3.0, 1.0, 1.0]
    assert ts.reward["agent"].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert ts.reward["box"].tolist() == [[-1.0], [-1.0]]
