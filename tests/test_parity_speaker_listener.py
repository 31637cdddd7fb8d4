"""simple_speaker_listener_v4 equals mpe2's, step for step (float64, shared initial state).

The goal landmark is per-episode scenario state: it is copied from the mpe2
world after every reset, and the colours we derive from it must equal mpe2's.
"""

import numpy as np
import pytest
import torch
from mpe_reference import EXTRA_SYNC, assert_same_spaces, run_lockstep

import fastmarl

ENV_ID = "simple_speaker_listener_v4"


def sync_goal(worlds, ours, env_ids, extra):
    goal = extra["goal"].clone()
    for i in env_ids:
        w = worlds[i]
        goal[i] = [lm is w.agents[0].goal_b for lm in w.landmarks].index(True)
    color = ours.scenario.episode_colors(ours.world, goal)
    for i in env_ids:
        ref = np.stack([e.color for e in worlds[i].entities])
        np.testing.assert_allclose(color[i].numpy(), ref, rtol=0, atol=1e-12, err_msg=f"episode colours env {i}")
    return {"goal": goal, "color": color}


EXTRA_SYNC[ENV_ID] = sync_goal


@pytest.mark.parametrize("continuous", [False, True])
def test_speaker_listener_lockstep(continuous):
    assert_same_spaces(ENV_ID, continuous=continuous)
    seen = {"goals": set(), "messages": set()}

    def before(t, ours, penvs):
        s = ours.world_state
        seen["goals"].update(s.extra["goal"].tolist())
        seen["messages"].update(s.comm[:, 0].argmax(-1)[s.comm[:, 0].abs().sum(-1) > 0].tolist())

    stats = run_lockstep(ENV_ID, steps=200, num_envs=3, continuous=continuous, before_step=before)
    assert stats["episode_ends"] == 3 * (200 // 25)
    assert seen["goals"] == {0, 1, 2}, f"every landmark should be a goal at least once, saw {seen['goals']}"
    assert seen["messages"] == {0, 1, 2}, "the speaker's messages should reach the listener's observation"


def test_speaker_listener_short_episodes_in_lockstep():
    stats = run_lockstep(ENV_ID, steps=30, num_envs=2, max_cycles=7)
    assert stats["episode_ends"] == 2 * (30 // 7)


def test_own_reset_and_observation_layout():
    env = fastmarl.make(ENV_ID, num_envs=256, seed=3, dtype=torch.float64)
    env.reset()
    s = env.world_state
    goal = s.extra["goal"]
    assert set(goal.tolist()) == {0, 1, 2}
    lm_colors = torch.tensor([[0.65, 0.15, 0.15], [0.15, 0.65, 0.15], [0.15, 0.15, 0.65]], dtype=torch.float64)
    obs = env.observations()
    torch.testing.assert_close(obs["speaker"][:, 0], lm_colors[goal])
    torch.testing.assert_close(s.extra["color"][:, 1], lm_colors[goal] + 0.45)
    assert float(s.pos.abs().max()) <= 1.0 and float(s.vel.abs().max()) == 0.0
    # the speaker says symbol 2; the listener stands still: no one moves, the message arrives
    speaker0 = s.pos[:, 0].clone()
    ts = env.step({"speaker": torch.full((256, 1), 2), "listener": torch.zeros(256, 1, dtype=torch.long)})
    o = ts.obs["listener"][:, 0]
    torch.testing.assert_close(o[:, 8:], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(256, 3))
    torch.testing.assert_close(env.world_state.pos[:, 0], speaker0)
    goal_pos = s.pos[torch.arange(256), 2 + goal]
    d2 = ((s.pos[:, 1] - goal_pos) ** 2).sum(-1)
    torch.testing.assert_close(ts.reward["speaker"][:, 0], -d2)
    torch.testing.assert_close(ts.reward["listener"][:, 0], -d2)
