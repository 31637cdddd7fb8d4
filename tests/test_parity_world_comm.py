"""simple_world_comm_v3 equals mpe2's, step for step (float64, shared initial state).

A scripted policy (prey head for food, adversaries chase prey, 25% random
moves, random leader messages) makes sure the interesting paths happen and the
test counts them: agents in forests and hidden from each other, food eaten,
captures, obstacle contacts, boundary penalties.
The scenario has no per-episode state (colours are constant); the sync only
checks mpe2's colours against ours.
"""

import numpy as np
import pytest
import torch
from mpe_reference import EXTRA_SYNC, assert_same_spaces, move_toward, run_lockstep

import fastmarl
from fastmarl.envs.mpe import simple_world_comm

ENV_ID = "simple_world_comm_v3"
SMALL = dict(num_good=3, num_adversaries=2, num_obstacles=2, num_food=3, num_forests=3)


def check_colors(worlds, ours, env_ids, extra):
    for i in env_ids:
        ref = np.stack([e.color for e in worlds[i].entities])
        np.testing.assert_allclose(ours.world.color.numpy(), ref, rtol=0, atol=1e-12, err_msg=f"colours env {i}")
    return {}


EXTRA_SYNC[ENV_ID] = check_colors



def nearest(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(E, M, 2) delta from each src (E, M, 2) to its nearest dst (E, K, 2)."""
    d = dst[:, None] - src[:, :, None]
    k = np.linalg.norm(d, axis=-1).argmin(-1)
    return np.take_along_axis(d, k[..., None, None], axis=2)[:, :, 0]


def run_scripted(continuous: bool, steps: int, num_envs: int, **kwargs) -> tuple[dict, dict]:
    sc_kw = {**simple_world_comm.KWARGS, **kwargs}
    nA, nG, nO, nF = sc_kw["num_adversaries"], sc_kw["num_good"], sc_kw["num_obstacles"], sc_kw["num_food"]
    A = nA + nG
    seen = dict(in_forest=0, hidden=0, food=0, captures=0, obstacle_contacts=0, out_of_bounds=0, messages=set())
    env = {}

    def before(t, ours, penvs):
        env["ours"] = ours
        s, sc, w = ours.world_state, ours.scenario, ours.world
        inf = sc.in_forest(w, s)
        seen["in_forest"] += int(inf.sum())
        share = (inf[:, :, None] & inf[:, None]).any(-1)
        out = ~inf.any(-1)
        seen["hidden"] += int((~(share | (out[:, :, None] & out[:, None])))[:, 1:].sum())  # leader sees all
        seen["food"] += int(sc.food_touches(w, s).sum())
        seen["captures"] += int(sc.captures(w, s).sum())
        if nO:
            d = (s.pos[:, :A, None] - s.pos[:, None, A:A + nO]).norm(dim=-1)
            seen["obstacle_contacts"] += int((d < w.size[:A, None] + w.size[A:A + nO]).sum())
        seen["out_of_bounds"] += int((s.pos[:, nA:A].abs() > 0.9).sum())
        seen["messages"].update(s.comm[:, 0].argmax(-1)[s.comm[:, 0].abs().sum(-1) > 0].tolist())

    def scripted(spec, E, rng, t):
        pos = env["ours"].world_state.pos.numpy()
        adv, prey, food = pos[:, :nA], pos[:, nA:A], pos[:, A + nO:A + nO + nF]
        adv_a = move_toward(nearest(adv, prey), continuous)
        prey_a = move_toward(nearest(prey, food), continuous)
        rand = rng.random((E, A)) < 0.25
        if continuous:
            r = rng.uniform(0, 1, (E, A, 5)).astype(np.float32)
            moves = np.where(rand[..., None], r, np.concatenate([adv_a, prey_a], 1))
            msg = rng.uniform(0, 1, (E, 1, 4)).astype(np.float32)
            acts = {"leadadversary": np.concatenate([moves[:, :1], msg], -1), "agent": moves[:, nA:]}
        else:
            moves = np.where(rand, rng.integers(0, 5, (E, A)), np.concatenate([adv_a, prey_a], 1))
            acts = {"leadadversary": moves[:, :1] + 5 * rng.integers(0, 4, (E, 1)), "agent": moves[:, nA:]}
        if nA > 1:
            acts["adversary"] = moves[:, 1:nA]
        return acts

    stats = run_lockstep(ENV_ID, steps=steps, num_envs=num_envs, continuous=continuous,
                         before_step=before, action_fn=scripted, **kwargs)
    return stats, seen


@pytest.mark.parametrize("continuous", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("sizes", [{}, pytest.param(SMALL, marks=pytest.mark.slow)], ids=["default", "sizes"])
def test_world_comm_lockstep(continuous, sizes):
    assert_same_spaces(ENV_ID, continuous=continuous, **sizes)
    stats, seen = run_scripted(continuous, steps=200, num_envs=3, **sizes)
    assert stats["episode_ends"] == 3 * (200 // 25)
    for k in ("in_forest", "hidden", "food", "captures", "obstacle_contacts", "out_of_bounds"):
        assert seen[k] >= 5, f"{k} happened only {seen[k]} times: that path is barely tested ({seen})"
    assert seen["messages"] == {0, 1, 2, 3}


def test_world_comm_lone_leader_and_no_forest():
    # one adversary (the leader, no "adversary" group), one prey, no obstacles or forests
    kw = dict(num_good=1, num_adversaries=1, num_obstacles=0, num_food=1, num_forests=0)
    assert_same_spaces(ENV_ID, **kw)
    stats, seen = run_scripted(False, steps=75, num_envs=2, **kw)
    assert stats["episode_ends"] == 2 * 3
    assert seen["captures"] >= 1 and seen["food"] >= 1, seen


def test_forest_hiding_by_hand():
    # leader, adversary_0, agent_0, agent_1; forests 0 and 1 far apart
    env = fastmarl.make(ENV_ID, num_envs=1, seed=0, dtype=torch.float64, num_good=2, num_adversaries=2,
                        num_obstacles=0, num_food=1, num_forests=2)
    env.reset()
    s = env.world_state
    pos = torch.tensor([[[0.9, 0.9], [-0.5, -0.5], [-0.52, -0.5], [0.5, 0.5],  # agents
                         [0.0, -0.9], [-0.5, -0.5], [0.5, 0.5]]], dtype=torch.float64)  # food, forests
    vel = torch.tensor([[[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]] + [[0.0, 0.0]] * 3], dtype=torch.float64)
    env.set_world_state(s._replace(pos=pos, vel=vel))
    obs = env.observations()
    # adversary_0 and agent_0 share forest 0; agent_1 is alone in forest 1; the leader is outside
    adv = obs["adversary"][0, 0]
    other_rel = adv[4 + 6:4 + 6 + 6].reshape(3, 2)  # leader, agent_0, agent_1
    torch.testing.assert_close(other_rel, torch.tensor([[0.0, 0.0], [-0.02, 0.0], [0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(adv[16:20], torch.tensor([0.5, 0.6, 0.0, 0.0], dtype=torch.float64))  # prey vel
    torch.testing.assert_close(adv[20:22], torch.tensor([1.0, -1.0], dtype=torch.float64))  # in forest 0
    lead = obs["leadadversary"][0, 0]  # sees everyone
    torch.testing.assert_close(lead[10:16], (pos[0, 1:4] - pos[0, 0]).reshape(-1))
    torch.testing.assert_close(lead[16:20], vel[0, 2:4].reshape(-1))
    torch.testing.assert_close(lead[20:22], torch.tensor([-1.0, -1.0], dtype=torch.float64))
    prey1 = obs["agent"][0, 1]  # alone in forest 1: sees nobody
    torch.testing.assert_close(prey1[10:16], torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(prey1[16:18], torch.tensor([-1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(prey1[18:20], torch.zeros(2, dtype=torch.float64))  # agent_0's velocity hidden


@pytest.mark.parametrize("bad", [dict(num_adversaries=0), dict(num_good=0), dict(num_food=0), dict(num_forests=-1)])
def test_unsupported_sizes_are_rejected(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        fastmarl.make(ENV_ID, **bad)
