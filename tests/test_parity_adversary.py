"""simple_adversary_v3 equals mpe2's, step for step (float64, shared initial state).

The episode's goal landmark is scenario state: it is copied from the mpe2 world
after every reset, and the colours we derive from it must equal mpe2's.
"""

import numpy as np
import pytest

from mpe_reference import EXTRA_SYNC, assert_same_spaces, run_lockstep


def sync_goal(worlds, ours, env_ids, extra):
    goal = extra["goal"].clone()
    for i in env_ids:
        w = worlds[i]
        goal[i] = [lm is w.agents[0].goal_a for lm in w.landmarks].index(True)
    color = ours.scenario.episode_colors(ours.world, goal)
    for i in env_ids:
        ref = np.stack([e.color for e in worlds[i].entities])
        np.testing.assert_allclose(color[i].numpy(), ref, rtol=0, atol=1e-12, err_msg=f"episode colours env {i}")
    return {"goal": goal, "color": color}


EXTRA_SYNC["simple_adversary_v3"] = sync_goal


@pytest.mark.parametrize("N", [2, 3, 4])
@pytest.mark.parametrize("continuous", [False, True])
def test_adversary_lockstep(N, continuous):
    assert_same_spaces("simple_adversary_v3", continuous=continuous, N=N)
    goals = set()

    def before(t, ours, penvs):
        goals.update(ours.world_state.extra["goal"].tolist())

    stats = run_lockstep("simple_adversary_v3", steps=200, num_envs=3, N=N, continuous=continuous, before_step=before)
    assert stats["episode_ends"] == 3 * (200 // 25)
    assert goals == set(range(N)), f"goals seen {goals}, expected every landmark"


@pytest.mark.parametrize("agents, landmarks", [(2, None), (None, 1), (2, 6), (5, 2)])
def test_adversary_partial_observability(agents, landmarks):
    kw = dict(N=4, num_agent_neighbors=agents, num_landmark_neighbors=landmarks)
    assert_same_spaces("simple_adversary_v3", **kw)
    stats = run_lockstep("simple_adversary_v3", steps=50, num_envs=2, **kw)
    assert stats["episode_ends"] == 2 * (50 // 25)
