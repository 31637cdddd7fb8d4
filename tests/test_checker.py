"""check_env passes on every registered env and names the problem in broken ones."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from envmodes import action_mode_kwargs

import fastmarl
from fastmarl.envs import ActionError, EnvCheckError, EnvSpec, GroupSpec, TimeStep, check_env, list_envs
from fastmarl.envs.api import validate_actions

ENV_IDS = [e.env_id for e in list_envs()]



@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_passes_on_registered_envs(env_id, continuous):
    env = fastmarl.make(env_id, num_envs=3, seed=0, **action_mode_kwargs(env_id, continuous))
    check_env(env, steps=30)  # 30 > max_cycles (25): auto-resets are checked too


class ToyEnv:
    """A correct tiny batched env: ``walker`` agents on a line.

    obs (E, 2, 2) = [position, time]; Discrete(3) moves -1/0/+1; reward = -|position|;
    episodes truncate after 4 steps; state (E, 3) = [positions, time].
    ``broken`` switches on one deliberate contract violation.
    """

    def __init__(self, num_envs: int = 3, broken: str | None = None):
        self.num_envs, self.device, self.broken = num_envs, torch.device("cpu"), broken
        obs_dim = 3 if broken == "obs_shape_spec" else 2
        self.spec = EnvSpec(
            env_id="toy_v0",
            groups={"walker": GroupSpec("walker", ("walker_0", "walker_1"),
                                        gym.spaces.Box(-100.0, 100.0, (obs_dim,), np.float32), gym.spaces.Discrete(3))},
            state_dim=3, max_episode_steps=4,
        )
        self.gen = torch.Generator().manual_seed(0)
        self.pos = torch.zeros(num_envs, 2)
        self.t = torch.zeros(num_envs)

    def _obs(self):
        o = torch.stack([self.pos, self.t[:, None].expand(-1, 2)], -1)
        if self.broken == "obs_shape":
            o = torch.cat([o, o[..., :1]], -1)
        if self.broken == "out_of_bounds":
            o = o + 1000.0
        if self.broken == "nondeterministic":
            o = o + torch.rand(o.shape)  # global RNG: not fixed by reset(seed)
        return {"walker": o}

    def _draw(self, mask):
        new = torch.randint(-3, 4, (self.num_envs, 2), generator=self.gen).float()
        self.pos = torch.where(mask[:, None], new, self.pos)
        self.t = torch.where(mask, 0.0, self.t)

    def reset(self, seed=None, mask=None):
        if seed is not None:
            self.gen.manual_seed(seed)
        if mask is None or self.broken == "reset_ignores_mask":
            mask = torch.ones(self.num_envs, dtype=torch.bool)
        self._draw(mask)
        obs = self._obs()
        f = torch.zeros(self.num_envs, dtype=torch.bool)
        return TimeStep(obs=obs, reward={"walker": torch.zeros(self.num_envs, 2)}, terminated=f, truncated=f.clone(),
                        final_obs=obs)

    def step(self, actions):
        if self.broken == "no_range_check":  # checks structure but clamps out-of-range actions
            validate_actions(self.spec, {k: v.clamp(0, 2) if isinstance(v, torch.Tensor) else v
                                         for k, v in actions.items()} if isinstance(actions, dict) else actions,
                             self.num_envs, self.device)
        elif self.broken != "no_validation":
            validate_actions(self.spec, actions, self.num_envs, self.device)
        self.pos = self.pos + (actions["walker"] - 1).float()
        self.t = self.t + 1
        reward = {"walker": -self.pos.abs()}
        trunc = self.t >= 4
        final_obs, final_state = self._obs(), self.state()
        if bool(trunc.any()):
            self._draw(trunc)
        obs = self._obs()
        if not bool(trunc.any()):
            final_obs, final_state = obs, None
        term = torch.zeros_like(trunc)
        if self.broken == "float_done":
            term, trunc = term.float(), trunc.float()
        if self.broken == "final_obs":
            final_obs = {"walker": obs["walker"] + 1.0}
        return TimeStep(obs=obs, reward=reward, terminated=term, truncated=trunc, final_obs=final_obs,
                        final_state=final_state)

    def state(self):
        s = torch.cat([self.pos, self.t[:, None]], 1)
        return torch.cat([s, s[:, :1]], 1) if self.broken == "state_size" else s

    def render(self, env_index=0):
        dtype = np.float32 if self.broken == "render" else np.uint8
        return np.zeros((16, 16, 3), dtype)


def test_toy_env_passes():
    check_env(ToyEnv(), steps=10)


@pytest.mark.parametrize("broken, message", [
    ("obs_shape", r"obs\['walker'\]: expected shape \(3, 2, 2\), got \(3, 2, 3\)"),
    ("obs_shape_spec", r"obs\['walker'\]: expected shape \(3, 2, 3\), got \(3, 2, 2\)"),
    ("float_done", r"terminated: expected torch\.bool, got torch\.float32"),
    ("state_size", r"state\(\): expected shape \(3, 3\), got \(3, 4\)"),
    ("nondeterministic", r"not deterministic: with the same seed \(1\) and actions, obs differs at reset"),
    ("out_of_bounds", r"outside the observation space bounds \[-100\.0, 100\.0\]"),
    ("final_obs", r"final_obs must equal obs"),
    ("reset_ignores_mask", r"reset\(mask=\.\.\.\): obs\['walker'\] changed in envs where mask is False"),
    ("no_validation", r"invalid actions \(a list instead of a dict\) raised TypeError: .*expected fastmarl\.envs\.ActionError"),
    ("no_range_check", r"accepted invalid actions \(group 'walker' out of range \(action 3\)\); expected it to raise"),
    ("render", r"render\(0\): expected an RGB array \(H, W, 3\) uint8, got float32 \(16, 16, 3\)"),
])
def test_check_env_names_the_problem(broken, message):
    with pytest.raises(EnvCheckError, match=message) as info:
        check_env(ToyEnv(broken=broken), steps=10)
    assert isinstance(info.value, AssertionError)


def test_check_env_rejects_bad_spec():
    env = ToyEnv()
    env.spec = EnvSpec("toy_v0", {"walker": GroupSpec("walker", ("w_0", "w_0"), env.spec.groups["walker"].observation_space,
                                                      gym.spaces.Discrete(3))}, 3, 4)
    with pytest.raises(EnvCheckError, match=r"agent names \['w_0'\] are not unique"):
        check_env(env)
    env.spec = EnvSpec("toy_v0", {"walker": GroupSpec("walkers", ("w_0", "w_1"), env.spec.groups["walker"].observation_space,
                                                      gym.spaces.Discrete(3))}, 3, 4)
    with pytest.raises(EnvCheckError, match=r"name is 'walkers'; expected the dict key 'walker'"):
        check_env(env)


def test_env_stays_usable_after_rejected_actions():
    """The invalid-action part of check_env relies on this: ActionError, then a normal step."""
    env = ToyEnv()
    env.reset(seed=0)
    before = env.state().clone()
    with pytest.raises(ActionError):
        env.step({"walker": torch.full((3, 2), 5)})
    assert torch.equal(env.state(), before)
    ts = env.step({"walker": torch.full((3, 2), 2)})
    assert torch.equal(env.state()[:, :2], before[:, :2] + 1) and ts.reward["walker"].shape == (3, 2)
