"""from_pettingzoo on awkward PettingZoo envs: a state() that raises once the episode is over,
agent death and removal (SISL multiwalker, butterfly KAZ), deprecated ids and misspelled kwargs."""

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from pettingzoo import ParallelEnv

from fastmarl.config import ConfigError, PPOConfig, TrainConfig
from fastmarl.envs.pz_vecenv import from_pettingzoo
from fastmarl.train import train
from fastmarl.train.runner import _make_env, pettingzoo_factory


class StateAfterEndRaises(ParallelEnv):
    """Two agents, 3 steps an episode; state() is the step count twice, and raises once every
    agent is gone (like multiwalker's state(), which reads its removed walkers)."""

    metadata = {"name": "state_after_end_raises_v0"}

    def __init__(self):
        self.possible_agents = ["agent_0", "agent_1"]
        self.agents = []
        self.t = 0
        self.state_calls_after_end = 0

    def observation_space(self, agent):
        return gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return {a: np.array([0.0], np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        done = self.t == 3
        obs = {a: np.array([self.t], np.float32) for a in self.agents}
        rew = {a: 1.0 for a in self.agents}
        term = {a: done for a in self.agents}
        trunc = {a: False for a in self.agents}
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return obs, rew, term, trunc, infos

    def state(self):
        if not self.agents:
            self.state_calls_after_end += 1
            raise IndexError("list index out of range")
        return np.array([self.t, self.t], np.float32)


def _run_episode(env):
    env.reset(seed=0)
    acts = {"agent": torch.zeros(env.num_envs, 2, dtype=torch.long)}
    out = []
    for _ in range(3):
        if env.need_state:
            env.state()  # a centralized learner reads the state every step
        out.append(env.step(acts))
    return out


def test_ippo_never_reads_the_finished_envs_state():
    env = from_pettingzoo(StateAfterEndRaises, num_envs=2, need_state=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        steps = _run_episode(env)
    assert bool(steps[-1].terminated.all())
    assert steps[-1].final_state is None
    assert all(e.state_calls_after_end == 0 for e in env.envs)


def test_mappo_gets_the_last_good_state_and_one_warning():
    env = from_pettingzoo(StateAfterEndRaises, num_envs=2, need_state=True)
    with pytest.warns(RuntimeWarning) as record:
        steps = _run_episode(env)
        steps += _run_episode(env)  # a second episode end: no second warning
    msgs = [str(w.message) for w in record if "state()" in str(w.message)]
    assert msgs == ["state_after_end_raises_v0: state() raised IndexError: list index out of range after its "
                    "episode ended; final_state is the last state before the end (warned once)"]
    last = steps[2]
    assert bool(last.terminated.all())
    # the state read before the last step (t = 2), not zeros and not a crash
    assert last.final_state.tolist() == [[2.0, 2.0], [2.0, 2.0]]
    assert env.state().tolist() == [[0.0, 0.0], [0.0, 0.0]]  # the new episode's


def test_runner_asks_for_state_only_for_state_learners():
    base = dict(env="pz:pettingzoo.butterfly.knights_archers_zombies_v11", env_kwargs={"max_cycles": 10},
                runs_dir=None)
    assert _make_env(TrainConfig(algo="ippo", **base), 1, 0).need_state is False
    assert _make_env(TrainConfig(algo="mappo", **base), 1, 0).need_state is True


def _train(env, algo="ippo", **kw):
    torch.set_num_threads(1)
    cfg = TrainConfig(algo=algo, env=env, num_envs=4, total_steps=400, seed=0, runs_dir=None, eval_interval=0,
                      eval_episodes=2, gif=False, tensorboard=False, progress=False,
                      ppo=PPOConfig(num_steps=50, num_minibatches=2), **kw)
    return train(cfg)


@pytest.mark.parametrize("algo", ["ippo", "mappo"])
def test_multiwalker_trains_with_its_defaults(algo):
    pytest.importorskip("Box2D")
    # defaults: walkers fall (agent death), a fall ends the episode early, continuous actions
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        res = _train("pz:pettingzoo.sisl.multiwalker_v9", algo)
    assert res.global_step == 400
    row = res.last_train
    assert row["episodes"] >= 1 and row["episode_length"] < 500  # ended early (max_cycles 500)
    assert math.isfinite(row["return"]) and math.isfinite(row["policy_loss/walker"])
    state_warnings = [w for w in record if "state() raised" in str(w.message)]
    if algo == "ippo":
        assert not state_warnings
    else:  # multiwalker's state() reads the fallen walkers' bodies: the fallback, not a crash
        assert state_warnings and str(state_warnings[0].message).startswith("multiwalker_v9: state() raised")


def test_knights_archers_zombies_trains_with_ippo():
    res = _train("pz:pettingzoo.butterfly.knights_archers_zombies_v11", env_kwargs={"max_cycles": 40})
    assert res.global_step == 400
    row = res.last_train
    assert row["episodes"] >= 4 and row["episode_length"] <= 40
    assert math.isfinite(row["return"]) and math.isfinite(row["policy_loss/archer"])


def test_deprecated_pettingzoo_ids_pass_on_pettingzoos_hint():
    with pytest.raises(ConfigError) as e:
        pettingzoo_factory("pz:pettingzoo.sisl.pursuit_v4", {})
    assert str(e.value) == "env 'pz:pettingzoo.sisl.pursuit_v4': pursuit_v4 is now deprecated, use pursuit_v5 instead"
    with pytest.raises(ConfigError, match="knights_archers_zombies_v10 is now deprecated, use "
                                          "knights_archers_zombies_v11 instead"):
        pettingzoo_factory("pz:pettingzoo.butterfly.knights_archers_zombies_v10", {})


def test_misspelled_pettingzoo_kwarg_names_the_closest_one():
    with pytest.raises(ConfigError) as e:
        pettingzoo_factory("pz:pettingzoo.butterfly.knights_archers_zombies_v11", {"num_archer": 1})
    assert str(e.value).startswith("unknown keyword argument of pettingzoo.butterfly.knights_archers_zombies_v11 "
                                   "(env_kwargs): 'num_archer' (did you mean 'num_archers'?); valid: [")
    pytest.importorskip("Box2D")
    with pytest.raises(ConfigError, match=r"'n_walker' \(did you mean 'n_walkers'\?\)"):  # through SISL's _env
        pettingzoo_factory("pz:pettingzoo.sisl.multiwalker_v9", {"n_walker": 2})
