"""pursuit_evasion_v0: API conformance (ours and PettingZoo's), hand-checked
capture rewards and visibility masking on constructed states, scripted
evaders, scaling to 64 pursuers."""

import pytest
import torch
from pettingzoo.test import parallel_api_test

import fastmarl
from fastmarl.envs import check_env
from fastmarl.envs.api import JointPolicy
from fastmarl.envs.pettingzoo import to_parallel_env

torch.set_num_threads(1)


@pytest.mark.parametrize("kw", [dict(), dict(continuous_actions=True), dict(scripted_evaders=True),
                                dict(num_pursuers=4, num_evaders=2, num_neighbors=2, terminate_on_capture=True)])
def test_check_env_and_pettingzoo(kw):
    check_env(fastmarl.make("pursuit_evasion_v0", num_envs=3, seed=0, **kw), steps=60)
    parallel_api_test(to_parallel_env("pursuit_evasion_v0", seed=0, **kw), num_cycles=60)


def test_kwargs_validated():
    with pytest.raises(TypeError, match="sensing_radius"):
        fastmarl.make("pursuit_evasion_v0", sensing_radus=0.5)
    with pytest.raises(ValueError, match="num_pursuers"):
        fastmarl.make("pursuit_evasion_v0", num_pursuers=0)


def test_scales_to_64_pursuers():
    env = fastmarl.make("pursuit_evasion_v0", num_envs=2, seed=0, num_pursuers=64, num_evaders=4, num_neighbors=8)
    ts = env.reset(seed=0)
    L = 2
    # k = 8 slots per kind, zero-padded when fewer exist (4 evaders)
    assert ts.obs["pursuer"].shape == (2, 64, 4 + 2 * L + 5 * 8 + 5 * 8)
    assert ts.obs["evader"].shape == (2, 4, 4 + 2 * L + 5 * 8 + 5 * 8)
    ts = env.step({"pursuer": torch.randint(0, 5, (2, 64)), "evader": torch.randint(0, 5, (2, 4))})
    assert ts.reward["pursuer"].shape == (2, 64) and env.state().shape == (2, 4 * (64 + 4 + L))


def _place(env, pos):
    """Put every entity at ``pos`` (N, 2), at rest, in env 0."""
    s = env.world_state
    p = torch.as_tensor(pos, dtype=s.pos.dtype)[None].expand_as(s.pos).clone()
    env.set_world_state(s._replace(pos=p, vel=torch.zeros_like(s.vel)))


NOOP = {"pursuer": torch.zeros(1, 3, dtype=torch.long), "evader": torch.zeros(1, 2, dtype=torch.long)}


def test_capture_rewards():
    env = fastmarl.make("pursuit_evasion_v0", num_envs=1, seed=0, num_evaders=2)
    env.reset(seed=0)
    # pursuers, evaders, obstacles; evader 0 is 0.1 from pursuer 0 (< 0.15), evader 1 is far
    _place(env, [[0, 0], [-0.8, -0.8], [0.8, -0.8], [0.1, 0], [0.0, 0.6], [0.5, 0.7], [-0.5, 0.7]])
    ts = env.step(NOOP)  # at rest: positions do not move in this step
    assert ts.reward["pursuer"][0].tolist() == [10.0, 10.0, 10.0]  # shared per capture
    assert ts.reward["evader"][0].tolist() == [-10.0, 0.0]
    assert env.capture_rate().tolist() == [0.5]
    # evader 1 near the wall: boundary penalty 10 * (0.95 - 0.9) on top of nothing
    _place(env, [[0, 0], [-0.8, -0.8], [0.8, -0.8], [0.1, 0], [0.0, 0.95], [0.5, 0.7], [-0.5, 0.7]])
    ts = env.step(NOOP)
    assert ts.reward["evader"][0, 1].item() == pytest.approx(-0.5, abs=1e-5)


def test_visibility_masking():
    env = fastmarl.make("pursuit_evasion_v0", num_envs=1, seed=0, num_evaders=2, sensing_radius=0.8)
    env.reset(seed=0)
    _place(env, [[0, 0], [0.5, 0], [0.9, 0], [0, -0.3], [0, 0.85], [0.5, 0.7], [-0.5, 0.7]])
    o = env.observations()["pursuer"][0, 0]
    slots = o[8:].reshape(-1, 5)  # after vel, pos, 2 obstacles: 2 pursuer slots then 2 evader slots
    expect = torch.tensor([[0.5, 0, 0, 0, 1], [0, 0, 0, 0, 0],  # pursuer 1 seen, pursuer 2 (0.9) hidden
                           [0, -0.3, 0, 0, 1], [0, 0, 0, 0, 0]])  # evader 0 seen, evader 1 (0.85) hidden
    assert torch.allclose(slots, expect)
    assert torch.allclose(o[4:8], torch.tensor([0.5, 0.7, -0.5, 0.7]))  # obstacles always visible
    # k nearest: only visible ones, closest first
    env = fastmarl.make("pursuit_evasion_v0", num_envs=1, seed=0, num_evaders=2, num_neighbors=1)
    env.reset(seed=0)
    _place(env, [[0, 0], [0.5, 0], [0.3, 0], [0, -0.3], [0, 0.85], [0.5, 0.7], [-0.5, 0.7]])
    slots = env.observations()["pursuer"][0, 0, 8:].reshape(-1, 5)
    assert torch.allclose(slots, torch.tensor([[0.3, 0, 0, 0, 1], [0, -0.3, 0, 0, 1]]))


def test_scripted_evaders_flee():
    env = fastmarl.make("pursuit_evasion_v0", num_envs=1, seed=0, scripted_evaders=True, num_pursuers=2)
    assert list(env.spec.groups) == ["pursuer"]
    env.reset(seed=0)
    _place(env, [[0, 0], [-0.9, -0.9], [0.3, 0], [0.5, 0.7], [-0.5, 0.7]])
    env.step({"pursuer": torch.zeros(1, 2, dtype=torch.long)})
    ev = env.world_state.pos[0, 2]
    assert ev[0].item() > 0.3 + 0.05 and torch.dist(ev, torch.tensor([0.3, 0.0])).item() == pytest.approx(0.1, abs=1e-5)
    assert env.state().shape == (1, 4 * 5)


def _ts(env):
    obs = env.observations()
    f = torch.zeros(env.num_envs, dtype=torch.bool)
    return fastmarl.envs.api.TimeStep(obs=obs, reward={}, terminated=f, truncated=f.clone(), final_obs=obs)


def test_scripted_baseline_moves_by_hand():
    from fastmarl.envs.swarm.pursuit_evasion import baseline_policy

    env = fastmarl.make("pursuit_evasion_v0", num_envs=1, seed=0, num_evaders=2)
    env.reset(seed=0)
    # pursuer 0 sees evader 0 0.5 to its right (+x, at rest): it heads +x; pursuer 1 sees nothing
    # (every evader > 0.8 away) and patrols to its ring point 0.4 (cos 120, sin 120) = (-0.2, 0.35): from
    # (0.9, -0.9) the furthest axis is y (+1.25): +y; pursuer 2 (0.8 left of evader 1) chases it: +x.
    # evader 0 sees pursuer 0 0.5 to its left: it flees +x; evader 1 (0, 0.6) is pushed +y by pursuer 0
    # (0.6 below, weight 1 / 0.36) more than +x by pursuer 2 (0.8 left, weight 1 / 0.64): +y
    _place(env, [[0, 0], [0.9, -0.9], [-0.8, 0.6], [0.5, 0], [0.0, 0.6], [0.5, -0.7], [-0.5, -0.7]])
    a, _ = baseline_policy(env.spec).act(_ts(env), {})
    assert a["pursuer"].tolist() == [[2, 4, 2]] and a["evader"].tolist() == [[2, 4]]
    with pytest.raises(ValueError, match="num_obstacles"):
        baseline_policy(env.spec, num_obstacles=3)  # obs sizes do not match the env's kwargs


def test_scripted_baseline_beats_random_on_each_side():
    from fastmarl.envs.episodes import evaluate_policy
    from fastmarl.envs.scripted import RandomPolicy
    from fastmarl.envs.swarm.pursuit_evasion import baseline_policy

    env = fastmarl.make("pursuit_evasion_v0", num_envs=64, seed=0)
    base, rand = baseline_policy(env.spec), RandomPolicy(env.spec)
    both = evaluate_policy(base, env, seed=1)
    rand_pursuers = evaluate_policy(JointPolicy({"pursuer": rand, "evader": base}), env, seed=1)
    rand_evaders = evaluate_policy(JointPolicy({"pursuer": base, "evader": rand}), env, seed=1)
    assert both["return/pursuer"] > rand_pursuers["return/pursuer"] + 20  # about 54 vs 1
    assert both["return/evader"] > rand_evaders["return/evader"] + 50  # about -87 vs -215
    env = fastmarl.make("pursuit_evasion_v0", num_envs=64, seed=0, scripted_evaders=True, num_evaders=2,
                        num_neighbors=1)
    base = evaluate_policy(baseline_policy(env.spec, num_evaders=2, num_neighbors=1), env, seed=1)["return"]
    assert base > evaluate_policy(RandomPolicy(env.spec), env, seed=1)["return"] + 5
