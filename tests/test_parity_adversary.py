"""simple_adversary_v3 equals mpe2's, step for step (float64, shared initial state).

The episode's goal landmark is scenario state: it is copied from the mpe2 world
after every reset, and the colours we derive from it must equal mpe2's.
"""

import pytest
from mpe_reference import EXTRA_SYNC, assert_same_spaces, run_lockstep, sync_goal_landmark

EXTRA_SYNC["simple_adversary_v3"] = sync_goal_landmark


@pytest.mark.parametrize("N", [2, pytest.param(3, marks=pytest.mark.slow), pytest.param(4, marks=pytest.mark.slow)])
@pytest.mark.parametrize("continuous", [False, pytest.param(True, marks=pytest.mark.slow)])
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
