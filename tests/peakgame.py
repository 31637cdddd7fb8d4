"""A one-shot continuous team game with a known optimum, for the off-policy actor-critic tests.

``PeakGame``: 2 agents, each acts ``Box(-1, 1, (2,))`` once per episode (then the
episode terminates); both get the team reward

    r = 1 - |a_0 - t_0|^2 - |a_1 - t_1|^2 - |(a_0 - a_1) - (t_0 - t_1)|^2,

peaked at the joint action ``(t_0, t_1)`` (reward 1; every other joint action
less). The last term couples the agents: agent 0's best reply moves with agent 1's
action, so only the joint optimum is stable. Observations are a constant ``[1]``,
the global state ``[1]``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from fastmarl.envs.api import EnvSpec, GroupSpec, TimeStep
from fastmarl.train.loop import LoopSettings, run_loop
from fastmarl.train.runner import build_learner

TARGET = torch.tensor([[0.6, -0.2], [-0.4, 0.3]])  # (agent, action dim): the optimal joint action


def peak_reward(a: torch.Tensor) -> torch.Tensor:
    """Team reward of joint actions (E, 2, 2) -> (E,)."""
    d = a - TARGET
    return 1.0 - (d ** 2).sum((-2, -1)) - ((d[:, 0] - d[:, 1]) ** 2).sum(-1)


class PeakGame:
    def __init__(self, num_envs: int = 8, box_low: float = -1.0, box_high: float = 1.0):
        self.num_envs, self.device = num_envs, torch.device("cpu")
        obs = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.low, self.high = box_low, box_high
        act = gym.spaces.Box(box_low, box_high, (2,), np.float32)
        self.spec = EnvSpec("peak_v0", {"agent": GroupSpec("agent", ("agent_0", "agent_1"), obs, act)}, state_dim=1,
                            max_episode_steps=1)

    def _obs(self):
        return {"agent": torch.ones(self.num_envs, 2, 1)}

    def state(self):
        return torch.ones(self.num_envs, 1)

    def reset(self, seed=None, mask=None):
        f = torch.zeros(self.num_envs, dtype=torch.bool)
        obs = self._obs()
        return TimeStep(obs, {"agent": torch.zeros(self.num_envs, 2)}, f, f.clone(), obs)

    def step(self, actions):
        a = actions["agent"]
        assert a.shape == (self.num_envs, 2, 2) and bool(((a >= self.low) & (a <= self.high)).all())
        u = (a - self.low) / (self.high - self.low) * 2 - 1  # the game is played in [-1, 1]
        r = peak_reward(u)[:, None].expand(-1, 2).contiguous()
        done = torch.ones(self.num_envs, dtype=torch.bool)
        obs = self._obs()
        return TimeStep(obs, {"agent": r}, done, ~done, obs, final_state=self.state())

    def state_dict(self):
        return {}

    def load_state_dict(self, s):
        pass


def test_peak_reward_is_one_at_the_target_only():
    best = peak_reward(TARGET[None])
    torch.testing.assert_close(best, torch.ones(1))
    other = TARGET[None] + 0.1 * torch.randn(100, 2, 2, generator=torch.Generator().manual_seed(0))
    assert bool((peak_reward(other) < 1.0).all())
    # a box of [0, 2] is the same game, shifted
    env = PeakGame(3, 0.0, 2.0)
    env.reset()
    torch.testing.assert_close(env.step({"agent": (TARGET + 1.0)[None].expand(3, 2, 2)}).reward["agent"],
                               torch.ones(3, 2))


def train_on(env_factory, cfg):
    """Train ``cfg``'s learner (a SACConfig / DDPGConfig; its ``env`` is only a name) on
    ``env_factory(num_envs)`` through the one loop, without files; returns the TrainResult."""
    env = env_factory(cfg.num_envs)
    learner = build_learner(cfg, env.spec, "cpu")
    return run_loop(LoopSettings.of(cfg), learner, env, lambda n, seed, render: env_factory(n))


# a fast, small setting for the toy games: ~600 gradient steps of 128 transitions
TOY = dict(env="peak_v0", total_steps=5000, num_envs=8, learning_starts=256, update_interval=8, batch_size=128,
           hidden_size=64, log_interval=2500, eval_episodes=8, progress=False)
