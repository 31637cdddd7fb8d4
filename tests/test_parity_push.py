"""simple_push_v3 equals mpe2's, step for step (float64, shared initial state).

The episode's goal landmark is scenario state: it is copied from the mpe2 world
after every reset, and the colours we derive from it must equal mpe2's.
"""

import numpy as np
import pytest
from mpe_reference import EXTRA_SYNC, assert_same_spaces, move_toward, run_lockstep, sync_goal_landmark

EXTRA_SYNC["simple_push_v3"] = sync_goal_landmark



@pytest.mark.parametrize("continuous", [False, True])
def test_push_lockstep(continuous):
    assert_same_spaces("simple_push_v3", continuous=continuous)
    seen = {"contacts": 0, "goals": set()}
    env = {}

    def before(t, ours, penvs):
        env["ours"] = ours
        s = ours.world_state
        seen["contacts"] += int(((s.pos[:, 0] - s.pos[:, 1]).norm(dim=-1) < 0.1).sum())
        seen["goals"].update(s.extra["goal"].tolist())

    def scripted(spec, num_envs, rng, t):
        # the adversary chases the agent, the agent heads for its goal; 20% random moves
        s = env["ours"].world_state
        pos = s.pos.numpy()
        goal = pos[np.arange(num_envs), 2 + s.extra["goal"].numpy()]
        acts = {"adversary": move_toward(pos[:, None, 1] - pos[:, None, 0], continuous),
                "agent": move_toward(goal[:, None] - pos[:, None, 1], continuous)}
        rand = rng.random((num_envs, 1)) < 0.2
        for g in acts:
            r = (rng.uniform(0, 1, acts[g].shape).astype(np.float32) if continuous
                 else rng.integers(0, 5, acts[g].shape))
            acts[g] = np.where(rand[..., None] if continuous else rand, r, acts[g])
        return acts

    stats = run_lockstep("simple_push_v3", steps=200, num_envs=3, continuous=continuous,
                         before_step=before, action_fn=scripted)
    assert stats["episode_ends"] == 3 * (200 // 25)
    assert seen["contacts"] >= 5, f"the agents touched only {seen['contacts']} times: collision physics untested"
    assert seen["goals"] == {0, 1}, "both goal landmarks should occur"


def test_push_random_actions():
    stats = run_lockstep("simple_push_v3", steps=100, num_envs=2, continuous=True)
    assert stats["episode_ends"] == 2 * (100 // 25)
