"""Pursuit measures on hand-made trajectories, the scripted simple_tag policies and
the ScriptedGroups wrapper (fastmarl.analysis.pursuit, fastmarl.envs.scripted_tag,
fastmarl.envs.wrappers.ScriptedGroups / select_groups)."""

from __future__ import annotations

import math

import pytest
import torch

import fastmarl
from fastmarl.analysis import pursuit as pu
from fastmarl.envs.scripted_tag import TagChaserScripted, TagPreyScripted, move_towards
from fastmarl.envs.wrappers import ScriptedGroups, select_groups

torch.set_num_threads(1)


def _bearings(degrees, radius=0.5):
    a = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return radius * torch.stack([a.cos(), a.sin()], -1)


# -- captures ----------------------------------------------------------------------------

def _trajectory_with_contacts(T, contact_steps, E=1):
    """One prey at the origin, one predator far away except at the given 1-based steps (distance 0.1)."""
    pred = torch.full((T, E, 1, 2), 2.0)
    for t in contact_steps:
        pred[t - 1, :, 0] = torch.tensor([0.1, 0.0])
    return pred, torch.zeros(T, E, 1, 2)


def test_capture_at_step_7():
    pred, prey = _trajectory_with_contacts(25, [7, 8, 12])
    st = pu.capture_stats(pu.contacts(pred, prey))
    assert st["first_capture"].tolist() == [7.0]
    assert st["captured"].tolist() == [True]
    assert st["capture_events"].tolist() == [2.0]  # onsets at 7 and 12; 8 continues the contact of 7
    assert st["contact_steps"].tolist() == [3.0]
    s = pu.summarise_captures(st)
    assert s["time_to_first_capture"] == 7.0 and s["capture_rate"] == 1.0


def test_no_capture_and_contact_at_step_1():
    pred_a, prey = _trajectory_with_contacts(10, [])
    pred_b, _ = _trajectory_with_contacts(10, [1, 2])
    st = pu.capture_stats(pu.contacts(torch.cat([pred_a, pred_b], 1), torch.cat([prey, prey], 1)))
    assert math.isnan(st["first_capture"][0].item()) and st["first_capture"][1].item() == 1.0
    assert st["captured"].tolist() == [False, True]
    assert st["capture_events"].tolist() == [0.0, 1.0]
    s = pu.summarise_captures(st)
    assert s["capture_rate"] == 0.5 and s["time_to_first_capture"] == 1.0 and s["captures_per_episode"] == 0.5


def test_contact_threshold_and_pairs():
    prey = torch.zeros(1, 1, 1, 2)
    pred = torch.tensor([[[[0.124, 0.0], [0.0, -0.126], [0.05, 0.05]]]])  # (1, 1, 3, 2)
    c = pu.contacts(pred, prey)
    assert c.tolist() == [[[[True, False, True]]]]
    st = pu.capture_stats(c)
    assert st["contact_pairs"].tolist() == [2.0] and st["capture_events"].tolist() == [1.0]
    with pytest.raises(ValueError, match="bool"):
        pu.capture_stats(c.float())


# -- angular spread --------------------------------------------------------------------------

def test_resultant_length_hand_cases():
    prey = torch.tensor([0.3, -0.2], dtype=torch.float64)
    assert pu.resultant_length(prey + _bearings([0, 120, 240]), prey).item() == pytest.approx(0.0, abs=1e-12)
    assert pu.resultant_length(prey + _bearings([40, 40, 40], 0.3), prey).item() == pytest.approx(1.0)
    # same bearing at different distances is still one side
    pred = prey + torch.cat([_bearings([40], 0.2), _bearings([40], 0.9)])
    assert pu.resultant_length(pred, prey).item() == pytest.approx(1.0)
    assert pu.resultant_length(prey + _bearings([0, 90]), prey).item() == pytest.approx(math.sqrt(0.5))
    assert pu.resultant_length(prey + _bearings([0, 180]), prey).item() == pytest.approx(0.0, abs=1e-12)


def test_spread_at_first_capture_and_random_baseline():
    T = 5
    prey = torch.zeros(T, 2, 2, dtype=torch.float64)
    pred = torch.ones(T, 2, 3, 2, dtype=torch.float64)  # all at one bearing (R = 1) by default
    pred[2, 0] = _bearings([0, 120, 240], 0.1)  # env 0: surrounded at step 3
    first = torch.tensor([3.0, math.nan])
    r = pu.spread_at_capture(pred, prey, first)
    assert r[0].item() == pytest.approx(0.0, abs=1e-12) and math.isnan(r[1].item())
    # E[R^2] = 1/P for independent uniform bearings, so E[R] < 1/sqrt(3) = 0.577
    assert 0.50 < pu.random_resultant_length(3, samples=20_000) < 0.577


# -- profiles and roles ------------------------------------------------------------------------

def test_predator_profiles_hand_cases():
    T = 4
    prey = torch.zeros(T, 1, 2)
    prey[:, 0, 1] = torch.arange(T) * 0.1  # prey moving up by 0.1 a step
    pred = torch.tensor([[-1.0, 0.0], [1.0, 0.0]]).expand(T, 1, 2, 2).clone()
    vel = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).expand(T, 1, 2, 2).clone()  # 0 runs at the prey, 1 runs up
    prof = pu.predator_profiles(pred, vel, prey, lead=2)
    d0 = torch.sqrt(1 + (torch.arange(T) * 0.1) ** 2)
    assert prof["distance"][:, 0, 0].tolist() == pytest.approx(d0.tolist(), abs=1e-6)
    # predator 0 at t=0: straight at the prey (cos 1); predator 1 runs perpendicular (cos 0)
    assert prof["heading"][0, 0].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    # towards the prey 2 steps later (0, 0.2): predator 1 at (1, 0) moving up -> cos = 0.2 / sqrt(1.04)
    assert prof["heading_lead"][0, 0, 1].item() == pytest.approx(0.2 / math.sqrt(1.04), abs=1e-6)
    # standing still: no heading
    vel[1, 0, 0] = 0.0
    assert math.isnan(pu.predator_profiles(pred, vel, prey)["heading"][1, 0, 0].item())


def test_role_shares():
    d = torch.ones(3, 4, 3)
    d[:, 0, 2] = 0.1  # env 0: predator 2 closest
    d[:, 1:, 0] = 0.2  # envs 1-3: predator 0 closest
    assert pu.role_shares(d).tolist() == pytest.approx([0.75, 0.0, 0.25])


def test_tag_positions_match_world_state():
    for P in (3, 1):
        env = fastmarl.make("simple_tag_v3", num_envs=5, seed=3, num_adversaries=P)
        ts = env.reset(seed=3)
        gen = torch.Generator().manual_seed(0)
        for _ in range(3):
            ts = env.step({g: torch.randint(0, 5, (5, s.num_agents), generator=gen) for g, s in env.spec.groups.items()})
        got = pu.tag_positions(ts.obs["adversary"], P, 1, 2)
        s = env.world_state
        torch.testing.assert_close(got["pred_pos"], s.pos[:, :P])
        torch.testing.assert_close(got["pred_vel"], s.vel[:, :P])
        torch.testing.assert_close(got["prey_pos"], s.pos[:, P:P + 1])
        torch.testing.assert_close(got["prey_vel"], s.vel[:, P:P + 1])
    with pytest.raises(ValueError, match="adversary observations"):
        pu.tag_positions(ts.obs["adversary"], 3, 1, 2)


def test_contact_pairs_equal_simple_tag_reward():
    """Over a rollout, contact pairs from observed positions = the predators' reward / 10."""
    E = 64
    env = fastmarl.make("simple_tag_v3", num_envs=E, seed=1)
    chase = TagChaserScripted(env.spec)
    ts = env.reset(seed=1)
    pairs, paid = torch.zeros(E), torch.zeros(E)
    for _ in range(25):
        ts = env.step({"adversary": chase.act(ts, {})[0]["adversary"], "agent": torch.zeros(E, 1, dtype=torch.long)})
        pos = pu.tag_positions(ts.final_obs["adversary"], 3, 1, 2)
        pairs += pu.contacts(pos["pred_pos"], pos["prey_pos"]).sum((-1, -2))
        paid += ts.reward["adversary"][:, 0] / 10
    assert pairs.sum().item() > 50  # the chasers do catch a standing prey
    torch.testing.assert_close(pairs, paid)


# -- scripted policies -------------------------------------------------------------------------

def _prey_obs(pos, preds, obstacles=((5.0, 5.0), (-5.0, 5.0)), vel=(0.0, 0.0)):
    """simple_tag prey observation (P=len(preds), G=1, L=2): [vel, pos, obstacles rel, predators rel]."""
    parts = [list(vel), list(pos)] + [list(o) for o in obstacles] + [list(p) for p in preds]
    return torch.tensor([x for p in parts for x in p], dtype=torch.float32)[None, None]  # (1, 1, D)


def test_move_towards():
    d = torch.tensor([[0.0, 0.0], [1.0, 0.5], [-0.1, -1.0], [-2.0, 1.0], [0.2, 0.3]])
    assert move_towards(d).tolist() == [0, 2, 3, 1, 4]


def test_scripted_prey_flees_and_avoids_walls_and_obstacles():
    env = fastmarl.make("simple_tag_v3", num_envs=1)
    prey = TagPreyScripted(env.spec)
    act = lambda obs: move_towards(prey.push(obs)).item()  # noqa: E731
    far = [(3.0, 3.0), (-3.0, 3.0)]
    assert act(_prey_obs((0, 0), [(0.3, 0.0)] + far)) == 1  # predator to the right -> go left
    assert act(_prey_obs((0, 0), [(0.0, -0.3)] + far)) == 4  # predator below -> go up
    # right wall: flee up (unit push) vs wall 2 * (0.95 - 0.7) / 0.3 = 1.67 to the left -> left wins
    assert act(_prey_obs((0.95, 0), [(0.0, -0.5)] + far)) == 1
    # obstacle 0.1 to the right: 1.5 * (1 - 0.1 / 0.35) = 1.07 to the left beats the unit flee upwards
    assert act(_prey_obs((0, 0), [(0.0, -0.9)] + far, obstacles=((0.1, 0.0), (5.0, 5.0)))) == 1
    # weighted centroid by hand: predators at (0.2, 0) and (-0.1, 0.3), weights 1 / (d^2 + 0.01)
    obs = _prey_obs((0, 0), [(0.2, 0.0), (-0.1, 0.3), (3.0, 3.0)])
    rel = torch.tensor([[0.2, 0.0], [-0.1, 0.3], [3.0, 3.0]])
    w = 1 / ((rel ** 2).sum(-1) + 0.01)
    away = -(w[:, None] * rel).sum(0) / w.sum()
    torch.testing.assert_close(prey.push(obs)[0, 0], away / away.norm())
    nearest = TagPreyScripted(env.spec, flee="nearest")
    torch.testing.assert_close(nearest.push(obs)[0, 0], torch.tensor([-1.0, 0.0]))


def test_scripted_prey_evades_chasers_better_than_standing_still():
    E = 300
    env = fastmarl.make("simple_tag_v3", num_envs=E, seed=0)
    chase, flee = TagChaserScripted(env.spec), TagPreyScripted(env.spec)
    events = {}
    for mode in ("still", "flee"):
        ts = env.reset(seed=0)
        contact = []
        for _ in range(25):
            prey_a = flee.act(ts, {})[0]["agent"] if mode == "flee" else torch.zeros(E, 1, dtype=torch.long)
            ts = env.step({"adversary": chase.act(ts, {})[0]["adversary"], "agent": prey_a})
            pos = pu.tag_positions(ts.final_obs["adversary"], 3, 1, 2)
            contact.append(pu.contacts(pos["pred_pos"], pos["prey_pos"]))
        events[mode] = pu.capture_stats(torch.stack(contact))["contact_pairs"].mean().item()
    assert events["flee"] < 0.75 * events["still"], events


def test_scripted_policies_reject_wrong_envs():
    with pytest.raises(ValueError, match="groups"):
        TagPreyScripted(fastmarl.make("simple_spread_v3").spec)
    with pytest.raises(ValueError, match="discrete"):
        TagChaserScripted(fastmarl.make("simple_tag_v3", continuous_actions=True).spec)
    with pytest.raises(ValueError, match="full observations"):
        TagPreyScripted(fastmarl.make("simple_tag_v3", num_agent_neighbors=2).spec)
    with pytest.raises(ValueError, match="flee"):
        TagPreyScripted(fastmarl.make("simple_tag_v3").spec, flee="random")


# -- ScriptedGroups ------------------------------------------------------------------------------

class _CountingPolicy:
    """Stays still; its carry counts steps since the episode began (reset where ts.done)."""

    def __init__(self):
        self.seen = []

    def initial_carry(self, n):
        return torch.zeros(n)

    def act(self, ts, carry, deterministic=True, generator=None):
        assert set(ts.obs) == {"agent"}
        carry = torch.where(ts.done, 0.0, carry) + 1
        self.seen.append(carry.clone())
        return {"agent": torch.zeros(ts.obs["agent"].shape[:2], dtype=torch.long)}, carry


def test_scripted_groups_matches_stepping_the_env_by_hand():
    E = 6
    raw = fastmarl.make("simple_tag_v3", num_envs=E, seed=2)
    wrapped = ScriptedGroups(fastmarl.make("simple_tag_v3", num_envs=E, seed=2), {"agent": TagPreyScripted(raw.spec)})
    assert list(wrapped.spec.groups) == ["adversary"] and wrapped.spec.state_dim == raw.spec.state_dim
    prey = TagPreyScripted(raw.spec)
    ts_raw, ts_w = raw.reset(seed=2), wrapped.reset(seed=2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):  # crosses an episode end (25 steps)
        a = torch.randint(0, 5, (E, 3), generator=gen)
        ts_raw = raw.step({"adversary": a, "agent": prey.act(ts_raw, {})[0]["agent"]})
        ts_w = wrapped.step({"adversary": a})
        assert set(ts_w.obs) == {"adversary"} and set(ts_w.reward) == {"adversary"}
        torch.testing.assert_close(ts_w.obs["adversary"], ts_raw.obs["adversary"])
        torch.testing.assert_close(ts_w.final_obs["adversary"], ts_raw.final_obs["adversary"])
        torch.testing.assert_close(ts_w.reward["adversary"], ts_raw.reward["adversary"])
        torch.testing.assert_close(wrapped.last_timestep.reward["agent"], ts_raw.reward["agent"])
        assert torch.equal(ts_w.done, ts_raw.done)
    torch.testing.assert_close(wrapped.state(), raw.state())


def test_scripted_groups_restarts_carry_and_checks_input():
    E = 2
    pol = _CountingPolicy()
    env = ScriptedGroups(fastmarl.make("simple_tag_v3", num_envs=E, seed=0, max_cycles=3), {"agent": pol})
    env.reset(seed=0)
    for _ in range(5):
        env.step({"adversary": torch.zeros(E, 3, dtype=torch.long)})
    # steps 1-3 of the first episode, then 1-2 of the second
    assert [c[0].item() for c in pol.seen] == [1, 2, 3, 1, 2]
    with pytest.raises(ValueError, match="missing"):
        env.step({})
    with pytest.raises(ValueError, match="unexpected"):
        env.step({"adversary": torch.zeros(E, 3, dtype=torch.long), "agent": torch.zeros(E, 1, dtype=torch.long)})
    base = fastmarl.make("simple_tag_v3", num_envs=E)
    with pytest.raises(ValueError, match="unknown group of simple_tag_v3: 'prey'"):
        ScriptedGroups(base, {"prey": pol})
    with pytest.raises(ValueError, match="every group"):
        ScriptedGroups(base, {"agent": pol, "adversary": pol})
    with pytest.raises(TypeError, match="Policy protocol"):
        ScriptedGroups(base, {"agent": object()})
    with pytest.raises(RuntimeError, match="reset"):
        ScriptedGroups(base, {"agent": pol}).step({"adversary": torch.zeros(E, 3, dtype=torch.long)})


def test_select_groups():
    env = fastmarl.make("simple_tag_v3", num_envs=3, seed=0)
    ts = env.reset(seed=0)
    sub = select_groups(ts, ["agent"])
    assert set(sub.obs) == {"agent"} and set(sub.reward) == {"agent"} and sub.final_obs is sub.obs
    assert sub.obs["agent"] is ts.obs["agent"] and sub.terminated is ts.terminated
