"""A tiny PettingZoo env with image observations, for the CNN tests: ``pz:image_env``.

Each of ``n_agents`` agents sees its own 16x16 RGB frame (``uint8``, HWC) with a bright 4x4
square in its left or right half (drawn afresh every step), and earns 1 for pointing at it
(action 0: left, 1: right), 0 otherwise. A policy has to read the pixels: random play earns
0.5 a step, a perfect one 1. Episodes last ``max_cycles`` steps (truncation).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

SIZE = 16


class ImageEnv(ParallelEnv):
    metadata = {"name": "image_env_v0", "render_modes": ["rgb_array"], "is_parallelizable": True}

    def __init__(self, n_agents: int = 2, max_cycles: int = 16, size: int = SIZE, render_mode=None):
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self.max_cycles, self.size, self.render_mode = max_cycles, size, render_mode
        self._obs_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self._act_space = gym.spaces.Discrete(2)
        self.rng = np.random.default_rng()

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def _draw(self):
        self.side = self.rng.integers(0, 2, len(self.possible_agents))
        frames = {}
        for i, a in enumerate(self.possible_agents):
            f = np.full((self.size, self.size, 3), 20, np.uint8)
            y = int(self.rng.integers(0, self.size - 4))
            x = int(self.rng.integers(0, self.size // 2 - 4)) + self.side[i] * (self.size // 2)
            f[y:y + 4, x:x + 4] = 230
            frames[a] = f
        self.frames = frames
        return {a: frames[a].copy() for a in self.agents}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._draw(), {a: {} for a in self.agents}

    def step(self, actions):
        rewards = {a: float(int(actions[a]) == int(self.side[i])) for i, a in enumerate(self.possible_agents)
                   if a in actions}
        self.t += 1
        done = self.t >= self.max_cycles
        obs = self._draw()
        trunc = {a: done for a in self.agents}
        term = {a: False for a in self.agents}
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, term, trunc, infos

    def state(self):
        return self.side.astype(np.float32)

    def render(self):
        return np.concatenate([self.frames[a] for a in self.possible_agents], 1)


def parallel_env(**kwargs) -> ImageEnv:
    return ImageEnv(**kwargs)
