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
    assert ts.obs["agent"].shape == (2, 64, 15 + 2 * 6 + 2 * 2)  # 2 obstacles by default
    ts = env.step({"agent": torch.randint(0, 5, (2, 64))})
    assert ts.reward["agent"].shape == (2, 64) and env.state().shape == (2, 4 * 68 + 3)
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
                        progress_weight=10.0, collision_penalty=0.1, num_obstacles=0)
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


def test_obstacles_off_the_start_near_the_path():
    env = fastmarl.make("formation_v0", num_envs=256, seed=0, num_agents=4, num_obstacles=3)
    env.reset(seed=3)
    s = env.world_state
    agents, ref, goal, obst = s.pos[:, :4], s.pos[:, 4], s.pos[:, 5], s.pos[:, 6:]
    # no agent starts touching an obstacle (agents within 0.3 of the reference, obstacles >= 0.45 along a
    # path of length >= 1): clearance at least 0.45 - 0.3 - (0.04 + 0.1) = 0.01
    assert (agents[:, :, None] - obst[:, None]).norm(dim=-1).min().item() > 0.04 + 0.1
    d = goal - ref
    u = ((obst - ref[:, None]) * d[:, None]).sum(-1) / (d * d).sum(-1)[:, None]  # fraction along the path
    side = ((obst - ref[:, None])[..., 0] * d[:, None, 1] - (obst - ref[:, None])[..., 1] * d[:, None, 0]).abs() \
        / d.norm(dim=-1)[:, None]
    assert u.min().item() >= 0.45 - 1e-5 and u.max().item() <= 0.8 + 1e-5 and side.max().item() <= 0.2 + 1e-5
    o = env.observations()["agent"]
    assert o.shape == (256, 4, 15 + 2 * 3 + 2 * 3)
    assert torch.allclose(o[:, :, -6:].reshape(256, 4, 3, 2), obst[:, None] - agents[:, :, None], atol=1e-6)
    assert fastmarl.make("formation_v0", num_obstacles=0).spec.groups["agent"].obs_dim == 15 + 2 * 3
    with pytest.raises(ValueError, match="num_obstacles"):
        fastmarl.make("formation_v0", num_obstacles=-1)
    with pytest.raises(ValueError, match="obstacle_penalty"):
        fastmarl.make("formation_v0", obstacle_penalty=-0.5)


def test_obstacle_penalty_by_hand():
    env = fastmarl.make("formation_v0", num_envs=1, seed=0, num_agents=2, spacing=0.2, reference_speed=0.0,
                        progress_weight=0.0, collision_penalty=0.1, num_obstacles=2, obstacle_penalty=0.5)
    env.reset(seed=0)
    s = env.world_state
    # heading +x, line slots (0, -0.1) and (0, 0.1); agent 0 on its slot but touching obstacle 0 (0.13 < 0.14),
    # agent 1 on its slot and clear of both obstacles
    p = torch.tensor([[[0.0, -0.1], [0.0, 0.1], [0.0, 0.0], [1.0, 0.0], [0.0, -0.23], [0.6, 0.6]]])
    extra = {**s.extra, "shape": torch.tensor([0]), "heading": torch.tensor([0.0]), "goal_dist": torch.tensor([1.0])}
    env.set_world_state(s._replace(pos=p, vel=torch.zeros_like(s.vel), extra=extra))
    r = env.step({"agent": torch.zeros(1, 2, dtype=torch.long)}).reward["agent"][0]
    # both on their slots (the contact changes velocity first; positions move from the next step on)
    assert r.tolist() == pytest.approx([-0.5, 0.0], abs=1e-6)
    assert env.world_state.vel[0, 0, 1].item() > 0.05  # the contact force pushes agent 0 away (+y)
    assert env.world_state.vel[0, 1].abs().max().item() == 0.0


def test_baseline_beats_random():
    from fastmarl.envs.episodes import evaluate_policy
    from fastmarl.envs.scripted import RandomPolicy
    from fastmarl.envs.swarm.formation import GoToSlot, baseline_policy

    env = fastmarl.make("formation_v0", num_envs=64, seed=0)
    base = evaluate_policy(baseline_policy(env.spec), env, seed=1)["return"]
    rand = evaluate_policy(RandomPolicy(env.spec), env, seed=1)["return"]
    assert base > rand + 20  # about 5.5 vs -43.5
    with pytest.raises(ValueError, match="num_obstacles"):
        GoToSlot(env.spec, num_obstacles=3)  # obs sizes do not match: the env's kwargs are needed
    env = fastmarl.make("formation_v0", num_envs=64, seed=0, continuous_actions=True, num_obstacles=1)
    base = evaluate_policy(baseline_policy(env.spec, num_obstacles=1), env, seed=1)["return"]
    assert base > evaluate_policy(RandomPolicy(env.spec), env, seed=1)["return"] + 20


def test_baseline_steers_to_the_slot():
    from fastmarl.envs.swarm.formation import baseline_policy

    env = fastmarl.make("formation_v0", num_envs=1, seed=0, num_agents=2, spacing=0.2, reference_speed=0.0,
                        num_obstacles=1)
    env.reset(seed=0)
    s = env.world_state
    # heading +x: slots (0, -0.1), (0, 0.1); agent 0 is 0.3 left (-x) of its slot, agent 1 sits on its slot;
    # the obstacle is far away
    p = torch.tensor([[[-0.3, -0.1], [0.0, 0.1], [0.0, 0.0], [1.0, 0.0], [0.8, -0.8]]])
    extra = {**s.extra, "shape": torch.tensor([0]), "heading": torch.tensor([0.0])}
    env.set_world_state(s._replace(pos=p, vel=torch.zeros_like(s.vel), extra=extra))
    obs = env.observations()
    ts = fastmarl.envs.api.TimeStep(obs=obs, reward={}, terminated=torch.zeros(1, dtype=torch.bool),
                                    truncated=torch.zeros(1, dtype=torch.bool), final_obs=obs)
    a, _ = baseline_policy(env.spec, num_obstacles=1).act(ts, {})
    assert a["agent"].tolist() == [[2, 0]]  # agent 0: +x; agent 1: no-op (on its slot, at rest)
    # an obstacle 0.05 beyond agent 1's edge on its +y side pushes it -y (move 3)
    p[0, 4] = torch.tensor([0.0, 0.1 + 0.04 + 0.1 + 0.05])
    env.set_world_state(s._replace(pos=p, vel=torch.zeros_like(s.vel), extra=extra))
    obs = env.observations()
    ts = fastmarl.envs.api.TimeStep(obs=obs, reward={}, terminated=torch.zeros(1, dtype=torch.bool),
                                    truncated=torch.zeros(1, dtype=torch.bool), final_obs=obs)
    assert baseline_policy(env.spec, num_obstacles=1).act(ts, {})[0]["agent"][0, 1].item() == 3
