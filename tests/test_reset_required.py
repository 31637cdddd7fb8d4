"""step() before reset() is refused on every env (registered envs, wrappers, PettingZoo in both
directions) with a message naming the env; a reset, or loading a saved state, allows it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mpe2 import simple_spread_v3

import fastmarl
from fastmarl.envs import list_envs
from fastmarl.envs.api import ResetNeeded, env_state_dict, load_env_state_dict
from fastmarl.envs.comm_wrappers import BroadcastChannel
from fastmarl.envs.pettingzoo import to_parallel_env
from fastmarl.envs.pz_vecenv import from_pettingzoo

E = 2


def _zero_actions(spec) -> dict[str, torch.Tensor]:
    out = {}
    for g in spec.groups.values():
        if g.discrete:
            out[g.name] = torch.zeros(E, g.num_agents, dtype=torch.long)
        else:
            low = torch.as_tensor(g.action_space.low, dtype=torch.float32)
            out[g.name] = low.expand(E, g.num_agents, *low.shape).clone()
    return out


def _refuses_then_steps(env, name: str) -> None:
    with pytest.raises(ResetNeeded, match=rf"{name}: step\(\) was called before reset\(\); call env.reset"):
        env.step(_zero_actions(env.spec))
    env.reset(seed=0)
    ts = env.step(_zero_actions(env.spec))
    assert all(r.shape == (E, env.spec.groups[g].num_agents) for g, r in ts.reward.items())


@pytest.mark.parametrize("env_id", [e.env_id for e in list_envs()])
def test_every_registered_env_refuses_step_before_reset(env_id):
    _refuses_then_steps(fastmarl.make(env_id, num_envs=E, seed=0), env_id)


def test_wrapped_and_pettingzoo_envs_refuse_step_before_reset():
    _refuses_then_steps(BroadcastChannel(fastmarl.make("simple_spread_v3", num_envs=E, seed=0)), "simple_spread_v3")
    pz = from_pettingzoo(lambda: simple_spread_v3.parallel_env(max_cycles=5), E, seed=0)
    _refuses_then_steps(pz, pz.spec.env_id)
    par = to_parallel_env("simple_spread_v3", seed=0)
    with pytest.raises(ResetNeeded, match=r"simple_spread_v3: step\(\) was called before reset\(\)"):
        par.step({a: 0 for a in par.possible_agents})
    par.reset(seed=0)
    _, rew, *_ = par.step({a: 0 for a in par.possible_agents})
    assert set(rew) == set(par.possible_agents)


def test_a_loaded_state_counts_as_a_reset():
    src = fastmarl.make("traffic_grid_v0", num_envs=E, seed=0)
    src.reset(seed=3)
    src.step(_zero_actions(src.spec))
    dst = fastmarl.make("traffic_grid_v0", num_envs=E, seed=1)
    assert load_env_state_dict(dst, env_state_dict(src))
    a, b = src.step(_zero_actions(src.spec)), dst.step(_zero_actions(dst.spec))  # a resumed run steps at once
    for g in a.obs:
        np.testing.assert_array_equal(a.obs[g].numpy(), b.obs[g].numpy())
