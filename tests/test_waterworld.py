"""waterworld_v0: API conformance (ours and PettingZoo's), 64 pursuers, hand-computed sensor
readings, n_coop food, poison and thrust rewards on constructed states."""

import math

import pytest
import torch
from pettingzoo.test import parallel_api_test

import fastmarl
from fastmarl.envs import check_env
from fastmarl.envs.api import env_state_dict, load_env_state_dict
from fastmarl.envs.episodes import evaluate_policy
from fastmarl.envs.pettingzoo import to_parallel_env
from fastmarl.envs.scripted import RandomPolicy
from fastmarl.envs.swarm.waterworld import baseline_policy

torch.set_num_threads(1)
ID = "waterworld_v0"


@pytest.mark.parametrize("kw", [dict(max_cycles=40), dict(continuous_actions=False, max_cycles=40),
                                dict(n_pursuers=3, n_coop=2, n_sensors=8, speed_features=False, obstacle_coord=None,
                                     n_obstacles=2, local_ratio=0.3, max_cycles=40),
                                dict(n_pursuers=1, n_evaders=0, n_poisons=0, n_obstacles=0, obstacle_coord=(),
                                     max_cycles=40)])
def test_check_env_and_pettingzoo(kw):
    check_env(fastmarl.make(ID, num_envs=3, seed=0, **kw), steps=50)
    parallel_api_test(to_parallel_env(ID, seed=0, **kw), num_cycles=90)


def test_spaces_follow_pettingzoo():
    env = fastmarl.make(ID)
    g = env.spec.groups["pursuer"]
    assert g.obs_dim == 8 * 30 + 2 and g.action_space.shape == (2,) and g.agents == ("pursuer_0", "pursuer_1")
    assert float(g.action_space.low[0]) == -1.0 and float(g.observation_space.high[0]) == pytest.approx(math.sqrt(2))
    assert fastmarl.make(ID, speed_features=False, n_sensors=10).spec.groups["pursuer"].obs_dim == 5 * 10 + 2
    assert env.spec.max_episode_steps == 500


def test_kwargs_validated():
    with pytest.raises(TypeError, match="n_pursuers"):
        fastmarl.make(ID, n_pursuer=3)
    for bad, match in ((dict(n_coop=3), "n_coop"), (dict(local_ratio=1.5), "local_ratio"),
                       (dict(n_obstacles=2), "obstacle_coord"), (dict(obstacle_coord=[(1.5, 0.5)]), "obstacle_coord"),
                       (dict(sensor_range=0.0), "sensor_range"), (dict(n_sensors=0), "n_sensors")):
        with pytest.raises(ValueError, match=match):
            fastmarl.make(ID, **bad)


def test_64_pursuers():
    env = fastmarl.make(ID, num_envs=2, seed=0, n_pursuers=64, n_coop=2)
    ts = env.reset(seed=0)
    assert ts.obs["pursuer"].shape == (2, 64, 242) and env.state().shape == (2, 4 * (64 + 5 + 10) + 2)
    ts = env.step({"pursuer": torch.rand(2, 64, 2) * 2 - 1})
    assert ts.reward["pursuer"].shape == (2, 64) and torch.isfinite(ts.obs["pursuer"]).all()
    assert ts.obs["pursuer"].abs().max() <= math.sqrt(2) + 1e-6


def _env(**kw):
    """One env, 4 sensors (+x, +y, -x, -y), no obstacles unless given; everything at rest."""
    base = dict(n_pursuers=2, n_evaders=1, n_poisons=1, n_obstacles=0, obstacle_coord=(), n_sensors=4,
                sensor_range=0.2, radius=0.015)
    env = fastmarl.make(ID, num_envs=1, seed=0, **{**base, **kw})
    env.reset(seed=0)
    for k in ("vel", "food_vel", "poison_vel"):
        setattr(env, k, torch.zeros_like(getattr(env, k)))
    env.food = torch.full_like(env.food, 0.05)
    env.poison = torch.full_like(env.poison, 0.95)
    return env


def test_sensor_readings_by_hand():
    env = _env(n_obstacles=1, obstacle_coord=[(0.5, 0.65)], obstacle_radius=0.1)
    env.pos = torch.tensor([[[0.5, 0.5], [0.5, 0.35]]])
    env.vel = torch.tensor([[[0.1, 0.0], [0.0, 0.0]]])
    env.food = torch.tensor([[[0.6, 0.5]]])  # straight ahead of pursuer 0's +x ray, 0.1 away
    env.food_vel = torch.tensor([[[0.05, 0.0]]])
    o = env.observations()["pursuer"][0, 0]
    S = 4
    obst, wall, food, food_v = o[:S], o[S:2 * S], o[2 * S:3 * S], o[3 * S:4 * S]
    purs, purs_v = o[6 * S:7 * S], o[7 * S:8 * S]
    assert obst.tolist() == pytest.approx([1.0, 0.15 / 0.2, 1.0, 1.0])  # obstacle centre 0.15 up the +y ray
    assert wall.tolist() == [1.0, 1.0, 1.0, 1.0]  # 0.5 from every wall > 0.2
    assert food.tolist() == pytest.approx([0.1 / 0.2, 1.0, 1.0, 1.0])  # d / sensor_range
    # relative velocity along the ray over (evader_speed + pursuer_speed): (0.05 - 0.1) / 0.3
    assert food_v.tolist() == pytest.approx([-0.05 / 0.3, 0.0, 0.0, 0.0])
    assert purs.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.75])  # the other pursuer 0.15 down; never itself
    assert purs_v.tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0])  # (0 - 0.1, 0) has no -y component
    env.pos = torch.tensor([[[0.9, 0.5], [0.1, 0.1]]])
    wall = env.observations()["pursuer"][0, 0, S:2 * S]
    assert wall.tolist() == pytest.approx([0.1 / 0.2, 1.0, 1.0, 1.0])  # the +x ray leaves the square halfway
    # a food off the ray axis by more than its radius (0.03) is not seen; within it, seen at its projection
    env.pos = torch.tensor([[[0.5, 0.5], [0.1, 0.1]]])
    for dy, want in ((0.035, 1.0), (0.025, 0.5)):
        env.food = torch.tensor([[[0.6, 0.5 + dy]]])
        assert env.observations()["pursuer"][0, 0, 2 * S].item() == pytest.approx(want)


def test_food_needs_n_coop_pursuers():
    env = _env(n_pursuers=3, n_coop=2, encounter_reward=0.01, food_reward=10.0)
    env.food = torch.tensor([[[0.5, 0.5]]])
    env.pos = torch.tensor([[[0.54, 0.5], [0.2, 0.2], [0.8, 0.8]]])  # touching: 0.04 < 0.015 + 0.03
    zero = {"pursuer": torch.zeros(1, 3, 2)}
    ts = env.step(zero)
    assert ts.reward["pursuer"][0].tolist() == pytest.approx([0.01, 0.0, 0.0])  # only the encounter reward
    assert env.food[0, 0].tolist() == pytest.approx([0.5, 0.5])  # not eaten
    assert ts.obs["pursuer"][0, :, -2].tolist() == [1.0, 0.0, 0.0]  # touching-food flag
    env.pos = torch.tensor([[[0.54, 0.5], [0.5, 0.46], [0.8, 0.8]]])  # now two touch it
    ts = env.step(zero)
    assert ts.reward["pursuer"][0].tolist() == pytest.approx([10.01, 10.01, 0.0])
    assert (env.food[0, 0] - torch.tensor([0.5, 0.5])).norm() > 0.045  # eaten: it moved away
    assert ts.info["food_eaten"].tolist() == [1]


def test_poison_penalty_and_respawn():
    env = _env(poison_reward=-1.0)
    env.poison = torch.tensor([[[0.3, 0.3]]])
    env.pos = torch.tensor([[[0.3, 0.32], [0.7, 0.7]]])  # 0.02 < 0.015 + 0.01125
    ts = env.step({"pursuer": torch.zeros(1, 2, 2)})
    assert ts.reward["pursuer"][0].tolist() == pytest.approx([-1.0, 0.0])
    assert ts.obs["pursuer"][0, :, -1].tolist() == [1.0, 0.0]
    assert (env.poison[0, 0] - torch.tensor([0.3, 0.32])).norm() > 0.02625  # moved out of contact
    ts = env.step({"pursuer": torch.zeros(1, 2, 2)})
    assert ts.obs["pursuer"][0, :, -1].tolist() == [0.0, 0.0]


def test_thrust_penalty_speed_clip_and_local_ratio():
    env = _env(local_ratio=0.5, thrust_penalty=-0.5, pursuer_max_accel=0.5, pursuer_speed=0.2)
    env.pos = torch.tensor([[[0.5, 0.5], [0.3, 0.7]]])
    ts = env.step({"pursuer": torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])})
    # thrust 0.5 * (1, 1) has norm 0.707 > 0.5: scaled to 0.5, penalty -0.25; mean over pursuers -0.125
    assert ts.reward["pursuer"][0].tolist() == pytest.approx([0.5 * -0.25 + 0.5 * -0.125, 0.5 * 0.0 + 0.5 * -0.125])
    # velocity 0.5 / sqrt 2 = 0.354 per axis, clipped to 0.2; one step of dt = 1/15
    assert env.vel[0, 0].tolist() == pytest.approx([0.2, 0.2])
    assert env.pos[0, 0].tolist() == pytest.approx([0.5 + 0.2 / 15, 0.5 + 0.2 / 15])


def test_walls_and_obstacles_bounce():
    env = _env(n_obstacles=1, obstacle_coord=[(0.5, 0.5)], obstacle_radius=0.1)
    env.pos = torch.tensor([[[0.984, 0.2], [0.5, 0.38]]])
    env.vel = torch.tensor([[[0.2, 0.0], [0.0, 0.2]]])
    env.step({"pursuer": torch.zeros(1, 2, 2)})
    # pursuer 0 would reach x = 0.984 + 0.2 / 15 = 0.99733 > 1 - 0.015: mirrored back, velocity flipped
    assert env.pos[0, 0].tolist() == pytest.approx([2 * 0.985 - (0.984 + 0.2 / 15), 0.2])
    assert env.vel[0, 0].tolist() == pytest.approx([-0.2, 0.0])
    # pursuer 1 would reach y = 0.39333, inside the obstacle (surface at 0.5 - 0.115): pushed out, bounced
    assert env.pos[0, 1].tolist() == pytest.approx([0.5, 0.385])
    assert env.vel[0, 1].tolist() == pytest.approx([0.0, -0.2])


def test_state_dict_round_trip_continues_identically():
    env = fastmarl.make(ID, num_envs=3, seed=3, max_cycles=20)
    env.reset(seed=3)
    g = torch.Generator().manual_seed(0)
    for _ in range(18):
        env.step({"pursuer": torch.rand(3, 2, 2, generator=g) * 2 - 1})
    saved = env_state_dict(env)
    acts = [torch.rand(3, 2, 2, generator=g) * 2 - 1 for _ in range(4)]  # crosses an auto-reset
    first = [env.step({"pursuer": a}).obs["pursuer"].clone() for a in acts]
    other = fastmarl.make(ID, num_envs=3, seed=99, max_cycles=20)
    assert load_env_state_dict(other, saved)
    assert all(torch.equal(a, other.step({"pursuer": b}).obs["pursuer"]) for a, b in zip(first, acts))


def test_greedy_baseline_beats_random():
    kw = dict(max_cycles=100)
    env = fastmarl.make(ID, num_envs=16, seed=1, **kw)
    greedy = evaluate_policy(baseline_policy(env.spec), env)["return"]
    rand = evaluate_policy(RandomPolicy(env.spec), fastmarl.make(ID, num_envs=16, seed=1, **kw))["return"]
    assert greedy > rand + 20.0, (greedy, rand)  # measured: about 25 vs -14 (random pays the thrust penalty)
