"""swarm_defense_v0: API conformance (ours and PettingZoo's), 64 attackers vs 16 defenders,
engagements (alive mask, per-step limit), arrivals counted once, zero-sum steps, shaping."""

import pytest
import torch
from pettingzoo.test import parallel_api_test

import fastmarl
from fastmarl.envs import check_env
from fastmarl.envs.api import env_state_dict, load_env_state_dict
from fastmarl.envs.episodes import evaluate_policy
from fastmarl.envs.pettingzoo import to_parallel_env
from fastmarl.envs.scripted import RandomPolicy
from fastmarl.envs.swarm.swarm_defense import baseline_policy

torch.set_num_threads(1)

NO_SHAPING = dict(approach_shaping=0.0, pursuit_shaping=0.0)


@pytest.mark.parametrize("kw", [dict(), dict(continuous_actions=True),
                                dict(num_attackers=2, num_defenders=1, engagements_per_step=2, num_neighbors=1),
                                dict(num_attackers=4, engagement_radius=0.9, zone_radius=0.5)])  # early deaths
def test_check_env_and_pettingzoo(kw):
    check_env(fastmarl.make("swarm_defense_v0", num_envs=3, seed=0, max_cycles=25, **kw), steps=60)
    parallel_api_test(to_parallel_env("swarm_defense_v0", seed=0, max_cycles=25, **kw), num_cycles=60)


def test_kwargs_validated():
    with pytest.raises(TypeError, match="num_attackers"):
        fastmarl.make("swarm_defense_v0", num_attacker=8)
    for bad in (dict(num_defenders=0), dict(engagement_radius=0.0), dict(kill_penalty=-1.0),
                dict(engagements_per_step=1.5), dict(spawn_radius=0.1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            fastmarl.make("swarm_defense_v0", **bad)


def test_64_attackers_vs_16_defenders():
    env = fastmarl.make("swarm_defense_v0", num_envs=4, seed=0, num_attackers=64, num_defenders=16, num_neighbors=6)
    policy = baseline_policy(env.spec)
    ts = env.reset(seed=0)
    assert ts.obs["attacker"].shape == (4, 64, 6 + 10 * 6) and ts.obs["defender"].shape == (4, 16, 7 + 10 * 6)
    assert env.state().shape == (4, 4 * 80 + 64) and ts.alive["attacker"].all()
    killed = arrived = 0
    carry = policy.initial_carry(4)
    for _ in range(30):
        alive_before = ts.alive["attacker"]
        a, carry = policy.act(ts, carry)
        ts = env.step(a)
        assert ts.reward["attacker"].shape == (4, 64) and ts.alive["attacker"].shape == (4, 64)
        ex = env.world_state.extra
        killed += int(ex["killed"].sum())
        arrived += int(ex["arrived"].sum())
        if not ts.done.any():  # dead stays dead, and the dead's observations are zeros
            assert not (ts.alive["attacker"] & ~alive_before).any()
            assert ts.obs["attacker"][~ts.alive["attacker"]].abs().sum() == 0
    assert killed > 0 and arrived > 0


def _env(**kw):
    env = fastmarl.make("swarm_defense_v0", num_envs=1, seed=0, dtype=torch.float64, **{**NO_SHAPING, **kw})
    env.reset(seed=0)
    return env


def _place(env, attackers, defenders):
    """Attackers and defenders at the given points, at rest, all attackers alive (env 0)."""
    s = env.world_state
    pos = torch.tensor([*attackers, *defenders, (0.0, 0.0)], dtype=s.pos.dtype)[None]
    M = len(attackers)
    extra = {**s.extra, "alive": torch.ones(1, M, dtype=torch.bool), "prev_pos": pos[:, :-1].clone()}
    env.set_world_state(s._replace(pos=pos, vel=torch.zeros_like(s.vel), extra=extra))


def _noop(env):
    return env.step({g: torch.zeros(1, s.num_agents, dtype=torch.long) for g, s in env.spec.groups.items()})


def test_engagement_destroys_and_masks_dead():
    env = _env(num_attackers=2, num_defenders=2, engagement_radius=0.1, kill_penalty=0.25)
    _place(env, [(0.55, 0.0), (-0.8, 0.0)], [(0.5, 0.0), (-0.5, 0.5)])  # attacker 0 is 0.05 from defender 0
    ts = _noop(env)
    assert ts.alive["attacker"][0].tolist() == [False, True] and ts.alive["defender"][0].all()
    assert ts.reward["attacker"][0].tolist() == pytest.approx([-0.25, 0.0])
    assert ts.reward["defender"][0].tolist() == pytest.approx([0.25 / 2, 0.25 / 2])
    assert ts.obs["attacker"][0, 0].abs().sum() == 0 and ts.obs["attacker"][0, 1].abs().sum() > 0
    assert ts.obs["defender"][0, 0, 6].item() == pytest.approx(0.5)  # live attacker fraction
    wreck = env.world_state.pos[0, 0].clone()
    for _ in range(3):  # the dead attacker's actions are ignored and it earns nothing more
        ts = env.step({"attacker": torch.tensor([[2, 2]]), "defender": torch.zeros(1, 2, dtype=torch.long)})
        assert not ts.alive["attacker"][0, 0] and ts.reward["attacker"][0, 0] == 0.0
        assert torch.equal(env.world_state.pos[0, 0], wreck)
    # the defenders' observations no longer list the dead attacker: slot 0 is the live one
    pos = env.world_state.pos[0]
    assert ts.obs["defender"][0, 1, 7:9].tolist() == pytest.approx((pos[1] - pos[3]).tolist())


def test_engagement_limit_nearest_first():
    env = _env(num_attackers=4, num_defenders=1, engagement_radius=0.2, engagements_per_step=2)
    # three attackers in range at 0.05, 0.15, 0.1; one out of range
    _place(env, [(0.55, 0.0), (0.5, 0.15), (0.4, 0.0), (-0.9, 0.0)], [(0.5, 0.0)])
    ts = _noop(env)
    assert ts.alive["attacker"][0].tolist() == [False, True, False, True]
    ts = _noop(env)  # next step the third one goes
    assert ts.alive["attacker"][0].tolist() == [False, False, False, True]


def test_simultaneous_engagements_can_waste_a_shot():
    env = _env(num_attackers=2, num_defenders=2, engagement_radius=0.2, engagements_per_step=1)
    # both defenders have attacker 0 as their nearest: it dies once, attacker 1 survives this step
    _place(env, [(0.5, 0.0), (0.5, 0.12)], [(0.45, 0.0), (0.55, 0.0)])
    ts = _noop(env)
    assert ts.alive["attacker"][0].tolist() == [False, True]
    assert ts.reward["attacker"][0].tolist() == pytest.approx([-0.1, 0.0])  # one kill, counted once


def test_arrival_counted_once_and_termination():
    env = _env(num_attackers=2, num_defenders=3, zone_radius=0.2)
    _place(env, [(0.1, 0.0), (0.9, 0.0)], [(0.0, 0.9), (0.0, -0.9), (-0.9, 0.0)])
    ts = _noop(env)
    assert ts.reward["attacker"][0].tolist() == [1.0, 0.0] and ts.alive["attacker"][0].tolist() == [False, True]
    assert ts.reward["defender"][0].tolist() == pytest.approx([-1 / 3] * 3)
    ts = _noop(env)  # the consumed attacker stays in the zone but never scores again
    assert ts.reward["attacker"][0].tolist() == [0.0, 0.0] and ts.reward["defender"][0].abs().sum() == 0
    assert not ts.terminated[0]
    # the last attacker arrives: the episode terminates and the next one starts with all alive
    _place(env, [(0.1, 0.0), (0.0, 0.1)], [(0.0, 0.9), (0.0, -0.9), (-0.9, 0.0)])
    env.set_world_state(env.world_state._replace(extra={**env.world_state.extra,
                                                         "alive": torch.tensor([[False, True]])}))
    ts = _noop(env)
    assert ts.terminated[0] and ts.reward["attacker"][0].tolist() == [0.0, 1.0]
    assert ts.alive["attacker"][0].all() and ts.final_obs["attacker"][0].abs().sum() == 0


def test_engagement_before_arrival():
    env = _env(num_attackers=1, num_defenders=1, zone_radius=0.2, engagement_radius=0.1)
    _place(env, [(0.15, 0.0)], [(0.1, 0.0)])  # inside the zone and in range: destroyed, no score
    ts = _noop(env)
    assert ts.reward["attacker"][0].tolist() == pytest.approx([-0.1]) and ts.terminated[0]


def test_zero_sum_without_shaping():
    env = fastmarl.make("swarm_defense_v0", num_envs=16, seed=2, num_attackers=12, num_defenders=4,
                        engagement_radius=0.2, **NO_SHAPING)
    policy = baseline_policy(env.spec)
    ts, carry, events = env.reset(seed=0), policy.initial_carry(16), 0
    for _ in range(40):
        a, carry = policy.act(ts, carry)
        ts = env.step(a)
        total = ts.reward["attacker"].double().sum(1) + ts.reward["defender"].double().sum(1)
        assert torch.allclose(total, torch.zeros_like(total), atol=1e-5)
        events += int((ts.reward["attacker"] != 0).sum())
    assert events > 20  # kills and arrivals did happen


def test_shaping_rewards_progress():
    env = _env(num_attackers=1, num_defenders=1, approach_shaping=0.5, pursuit_shaping=0.2)
    _place(env, [(0.6, 0.0)], [(-0.5, 0.0)])
    s = env.world_state  # pretend both moved 0.1 toward their target in the last step
    prev = torch.tensor([[[0.7, 0.0], [-0.6, 0.0]]], dtype=s.pos.dtype)
    env.set_world_state(s._replace(extra={**s.extra, "prev_pos": prev}))
    ts = _noop(env)
    assert ts.reward["attacker"][0, 0].item() == pytest.approx(0.5 * 0.1)
    assert ts.reward["defender"][0, 0].item() == pytest.approx(0.2 * 0.1)


def test_checkpoint_resume_is_exact():
    env = fastmarl.make("swarm_defense_v0", num_envs=4, seed=1)
    policy = baseline_policy(env.spec)
    ts, carry = env.reset(seed=0), policy.initial_carry(4)
    for _ in range(5):
        a, carry = policy.act(ts, carry)
        ts = env.step(a)
    saved, ts0 = env_state_dict(env), ts
    runs = []
    for _ in range(2):
        load_env_state_dict(env, saved)
        ts, out = ts0, []
        for _ in range(30):
            a, _ = policy.act(ts, {})
            ts = env.step(a)
            out.append((ts.obs["attacker"].clone(), ts.alive["attacker"].clone()))
        runs.append(out)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(*runs))


def test_scripted_beats_random_on_both_sides():
    env = fastmarl.make("swarm_defense_v0", num_envs=64, seed=0)
    scripted = evaluate_policy(baseline_policy(env.spec), env, seed=0)
    rnd = evaluate_policy(RandomPolicy(env.spec), env, seed=0)
    # scripted attackers reach the zone far more often than random ones ...
    assert scripted["return/attacker"] > rnd["return/attacker"] + 0.05
    # ... and scripted defenders stop most of them
    assert scripted["return/attacker"] < 0.5
