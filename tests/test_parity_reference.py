"""simple_reference_v3 equals mpe2's, step for step (float64, shared initial state).

Each agent's goal landmark is per-episode scenario state: it is copied from the
mpe2 world after every reset, and the colours we derive from it must equal mpe2's.
"""

import numpy as np
import pytest
import torch
from mpe_reference import EXTRA_SYNC, assert_same_spaces, run_lockstep

import fastmarl

ENV_ID = "simple_reference_v3"


def sync_goals(worlds, ours, env_ids, extra):
    goal = extra["goal"].clone()
    for i in env_ids:
        w = worlds[i]
        for k, agent in enumerate(w.agents):
            goal[i, k] = [lm is agent.goal_b for lm in w.landmarks].index(True)
    color = ours.scenario.episode_colors(ours.world, goal)
    for i in env_ids:
        ref = np.stack([e.color for e in worlds[i].entities])
        np.testing.assert_allclose(color[i].numpy(), ref, rtol=0, atol=1e-12, err_msg=f"episode colours env {i}")
    return {"goal": goal, "color": color}


EXTRA_SYNC[ENV_ID] = sync_goals


@pytest.mark.parametrize("continuous,local_ratio", [(False, 0.5), (True, 0.5), (False, 0.2), (True, 0.9)])
def test_reference_lockstep(continuous, local_ratio):
    assert_same_spaces(ENV_ID, continuous=continuous, local_ratio=local_ratio)
    pairs = set()

    def before(t, ours, penvs):
        pairs.update(map(tuple, ours.world_state.extra["goal"].tolist()))

    stats = run_lockstep(ENV_ID, steps=200, num_envs=3, continuous=continuous, local_ratio=local_ratio,
                         before_step=before)
    assert stats["episode_ends"] == 3 * (200 // 25)
    assert len(pairs) >= 5, f"too few distinct goal pairs exercised: {pairs}"


def test_own_reset_rewards_and_messages():
    E = 512
    env = fastmarl.make(ENV_ID, num_envs=E, seed=1, dtype=torch.float64, local_ratio=0.25)
    env.reset()
    s = env.world_state
    goal = s.extra["goal"]
    assert goal.shape == (E, 2)
    assert len(set(map(tuple, goal.tolist()))) == 9, "both goals are drawn independently over 3 landmarks"
    # agent 0 says 7 and moves right; agent 1 says 3 and stays
    ts = env.step({"agent": torch.tensor([[2 + 5 * 7, 0 + 5 * 3]]).expand(E, 2)})
    obs = ts.obs["agent"]
    assert obs.shape == (E, 2, 21)
    torch.testing.assert_close(obs[:, 0, 11:], torch.nn.functional.one_hot(torch.tensor(3), 10).double().expand(E, 10))
    torch.testing.assert_close(obs[:, 1, 11:], torch.nn.functional.one_hot(torch.tensor(7), 10).double().expand(E, 10))
    torch.testing.assert_close(obs[:, 0, :2], torch.tensor([0.5, 0.0], dtype=torch.float64).expand(E, 2))  # 5 * dt
    lm_colors = torch.tensor([[0.75, 0.25, 0.25], [0.25, 0.75, 0.25], [0.25, 0.25, 0.75]], dtype=torch.float64)
    torch.testing.assert_close(obs[:, :, 8:11], lm_colors[goal])
    # hand-computed reward: local r_i = -|p_partner - landmark goal_i|, global their mean
    p = env.world_state.pos
    lm = p[:, 2:]
    r0 = -(p[:, 1] - lm[torch.arange(E), goal[:, 0]]).norm(dim=-1)
    r1 = -(p[:, 0] - lm[torch.arange(E), goal[:, 1]]).norm(dim=-1)
    g = (r0 + r1) / 2
    torch.testing.assert_close(ts.reward["agent"], torch.stack([0.75 * g + 0.25 * r0, 0.75 * g + 0.25 * r1], -1))


def test_bad_local_ratio_is_rejected():
    with pytest.raises(ValueError, match="local_ratio"):
        fastmarl.make(ENV_ID, local_ratio=1.5)
