"""formation_v0: API conformance (ours and PettingZoo's), scaling to 64 agents,
formation slots and rewards checked by hand on constructed states."""

import math

import pytest
import torch
from pettingzoo.test import parallel_api_test

import fastmarl
from fastmarl.envs import check_env
from fastmarl.envs.pettingzoo import to_parallel_env
from fastmarl.envs.swarm.formation import formation_offsets

torch.set_num_threads(1)


@pytest.mark.parametrize("kw", [dict(), dict(continuous_actions=True), dict(num_agents=3, num_neighbors=1,
                                                                           formation="circle"),
                                dict(num_agents=1)])
def test_check_env_and_pettingzoo(kw):
    check_env(fastmarl.make("formation_v0", num_envs=3, seed=0, **kw), steps=60)
    parallel_api_test(to_parallel_env("formation_v0", seed=0, **kw), num_cycles=60)


def test_kwargs_validated():
    with pytest.raises(TypeError, match="spacing"):
        fastmarl.make("formation_v0", spacng=0.2)
    with pytest.raises(ValueError, match="formation"):
        fastmarl.make("formation_v0", formation="square")


def test_scales_to_64_agents():
    env = fastmarl.make("formation_v0", num_envs=2, seed=0, num_agents=64, num_neighbors=6)
    ts = env.reset(seed=0)
    assert ts.obs["agent"].shape == (2, 64, 15 + 2 * 6)
    ts = env.step({"agent": torch.randint(0, 5, (2, 64))})
    assert ts.reward["agent"].shape == (2, 64) and env.state().shape == (2, 4 * 66 + 3)
    assert torch.isfinite(ts.reward["agent"]).all()


def test_offsets_by_hand():
    off = formation_offsets(3, 0.2)
    assert torch.allclose(off[0], torch.tensor([[0, -0.2], [0, 0.0], [0, 0.2]], dtype=off.dtype))  # line abreast
    assert torch.allclose(off[1], torch.tensor([[0, 0.0], [-0.2, 0.2], [-0.2, -0.2]], dtype=off.dtype))  # wedge
    r = 0.1  # circle: max(3 * 0.2 / 2 pi ~ 0.095, 0.2 / 2)
    assert torch.allclose(off[2, 1], torch.tensor([r * math.cos(2 * math.pi / 3), r * math.sin(2 * math.pi / 3)],
                                                  dtype=off.dtype))


def _set(env, agents, ref, goal, shape, heading, goal_dist):
    """Env 0 at rest: agents (N, 2), reference, goal, formation index, heading, previous centroid distance."""
    s = env.world_state
    p = torch.tensor([*agents, ref, goal], dtype=s.pos.dtype)[None].clone()
    extra = {**s.extra, "shape": torch.tensor([shape]), "heading": torch.tensor([heading], dtype=s.pos.dtype),
             "goal_dist": torch.tensor([goal_dist], dtype=s.pos.dtype)}
    env.set_world_state(s._replace(pos=p, vel=torch.zeros_like(s.vel), extra=extra))


def test_reward_by_hand():
    env = fastmarl.make("formation_v0", num_envs=1, seed=0, num_agents=3, spacing=0.2, reference_speed=0.0,
                        progress_weight=10.0, collision_penalty=0.1)
    env.reset(seed=0)
    # heading +y (pi/2): line slots are reference + (0.2, 0), (0, 0), (-0.2, 0) (y left -> -x)
    agents = [[0.2, 0.0], [0.0, 0.0], [-0.2, 0.3]]  # agent 2 is 0.3 off its slot
    centroid_goal = math.hypot(0.0, 1.0 - 0.1)  # centroid (0, 0.1), goal (0, 1)
    _set(env, agents, ref=(0.0, 0.0), goal=(0.0, 1.0), shape=0, heading=math.pi / 2, goal_dist=centroid_goal + 0.05)
    assert env.formation_error().item() == pytest.approx(0.1, abs=1e-6)
    r = env.step({"agent": torch.zeros(1, 3, dtype=torch.long)}).reward["agent"][0]
    assert r.tolist() == pytest.approx([-0.1 + 10 * 0.05] * 3, abs=1e-5)
    # wedge with agents 1 and 2 on top of each other: collision penalty for both, no progress
    agents = [[0.0, 0.0], [-0.2, -0.18], [-0.2, -0.2]]  # heading +x: slots (0,0), (-0.2,0.2), (-0.2,-0.2)
    _set(env, agents, ref=(0.0, 0.0), goal=(1.0, 0.0), shape=1, heading=0.0,
         goal_dist=math.hypot(1 + 0.4 / 3, 0.38 / 3))
    r = env.step({"agent": torch.zeros(1, 3, dtype=torch.long)}).reward["agent"][0]
    assert r.tolist() == pytest.approx([-0.38 / 3, -0.38 / 3 - 0.1, -0.38 / 3 - 0.1], abs=1e-5)
    o = env.observations()["agent"][0]
    assert o[:, 12:15].tolist() == [[0.0, 1.0, 0.0]] * 3  # wedge one-hot
    assert torch.allclose(o[1, 4:6], torch.tensor([0.0, 0.38]))  # agent 1's slot, relative to it


def test_reference_travels_to_goal_and_stops():
    env = fastmarl.make("formation_v0", num_envs=2, seed=0, reference_speed=0.3)
    env.reset(seed=0)
    s = env.world_state
    start, goal = s.pos[:, 4].clone(), s.pos[:, 5]
    env.step({"agent": torch.zeros(2, 4, dtype=torch.long)})
    moved = env.world_state.pos[:, 4] - start
    assert torch.allclose(moved.norm(dim=-1), torch.full((2,), 0.03), atol=1e-6)
    assert torch.allclose(moved / moved.norm(dim=-1, keepdim=True), (goal - start) / (goal - start).norm(dim=-1,
                                                                                         keepdim=True), atol=1e-5)
    # 0.02 from the goal: it arrives in one step (not overshooting) and then stays
    s = env.world_state
    pos = s.pos.clone()
    pos[:, 4] = pos[:, 5] + torch.tensor([0.0, 0.02])
    env.set_world_state(s._replace(pos=pos))
    for _ in range(2):
        env.step({"agent": torch.zeros(2, 4, dtype=torch.long)})
        assert torch.allclose(env.world_state.pos[:, 4], env.world_state.pos[:, 5], atol=1e-6)
    assert env.world_state.vel[:, 4].abs().max().item() < 1e-6
