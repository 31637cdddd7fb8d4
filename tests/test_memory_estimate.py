"""A run that would not fit in memory (image observations flattened into MLP inputs) is refused
before anything is allocated, in one line naming a num_envs that fits."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from pettingzoo import ParallelEnv

import fastmarl.config.base as config_base
from fastmarl.config import ConfigError, PPOConfig, TrainConfig, resolve
from fastmarl.config.images import ImageEncoderConfig
from fastmarl.envs.api import is_image_shape, memory_available
from fastmarl.envs.pz_vecenv import from_pettingzoo
from fastmarl.train import train
from fastmarl.train.runner import build_learner

H, W, C, A = 64, 64, 3, 3


class Frames(ParallelEnv):
    """Three agents that each see a 64x64 RGB frame (uint8), like pistonball's pistons."""

    metadata = {"name": "frames_v0"}

    def __init__(self):
        self.possible_agents = [f"piston_{i}" for i in range(A)]
        self.agents = []

    def observation_space(self, agent):
        return gym.spaces.Box(0, 255, (H, W, C), np.uint8)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        return {a: np.zeros((H, W, C), np.uint8) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        obs = {a: np.zeros((H, W, C), np.uint8) for a in self.agents}
        return obs, {a: 0.0 for a in self.agents}, {a: False for a in self.agents}, \
            {a: False for a in self.agents}, {a: {} for a in self.agents}

    def state(self):
        return np.zeros((A * H * W * C,), np.uint8)


def _cfg(**kw):  # the frames flattened into MLP inputs (the CNN torso's estimate: tests/test_images.py)
    return TrainConfig(**{"env": "pz:frames", "num_envs": 200, "total_steps": 10_000,
                          "ppo": PPOConfig(num_steps=24, images=ImageEncoderConfig(encoder="mlp")),
                          **kw})  # 4 minibatches for any num_envs


def test_image_observations_are_recognised():
    assert is_image_shape((84, 84, 3)) and is_image_shape((3, 84, 84)) and is_image_shape((64, 64))
    assert not is_image_shape((18,)) and not is_image_shape((5, 6, 7)) and not is_image_shape((84, 84, 12))
    g = from_pettingzoo(Frames, 1).spec.groups["piston"]
    assert g.source_shape == (H, W, C) and g.obs_dim == H * W * C and g.image_observations
    assert memory_available("cpu") is None or memory_available("cpu") > 0


def test_a_run_that_does_not_fit_is_refused_naming_a_num_envs_that_fits(monkeypatch, tmp_path):
    monkeypatch.setattr(config_base, "memory_available", lambda device: 2 * 2 ** 30)  # 2 GiB free
    spec = from_pettingzoo(Frames, 1).spec
    with pytest.raises(ConfigError, match=r"mappo on frames_v0 needs about \d+\.\d GiB, more than 80% of the 2\.0 "
                                          r"GiB free on cpu \(num_envs=200\): --num-envs (\d+) fits, or --algo ippo "
                                          r".*images flattened into MLP inputs") as info:
        resolve(_cfg(), spec)
    assert info.value.fields == ("num_envs",)
    fit = int(str(info.value).split("--num-envs ")[1].split()[0])
    assert 1 <= fit < 200
    resolve(_cfg(num_envs=fit), spec)  # the advice holds
    with pytest.raises(ConfigError, match="fits"):
        resolve(_cfg(num_envs=fit + 2), spec)
    resolve(_cfg(algo="ippo"), spec)  # no global state: 200 envs fit
    assert build_learner(_cfg(algo="ippo"), spec, "cpu") is not None
    # through train(): refused before the run directory is written (256 MiB free: 40 envs do not fit)
    monkeypatch.setattr(config_base, "memory_available", lambda device: 2 ** 28)
    monkeypatch.setattr("fastmarl.train.runner.pettingzoo_factory", lambda env, kwargs: Frames)
    with pytest.raises(ConfigError, match=r"--num-envs \d+ fits"):
        train(_cfg(num_envs=40, runs_dir=str(tmp_path)))
    assert not any(tmp_path.iterdir())
