"""simple_spread_v3 equals mpe2's, step for step (float64, shared initial state)."""

import numpy as np
import pytest
from mpe_reference import run_lockstep


@pytest.mark.parametrize("N", [pytest.param(2, marks=pytest.mark.slow), 3, pytest.param(6, marks=pytest.mark.slow)])
@pytest.mark.parametrize("continuous", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_spread_lockstep(N, continuous):
    stats = run_lockstep("simple_spread_v3", steps=200, num_envs=2, N=N, continuous=continuous)
    assert stats["episode_ends"] == 2 * (200 // 25)


def test_spread_partial_observability():
    stats = run_lockstep("simple_spread_v3", steps=60, num_envs=2, N=6, num_agent_neighbors=2, num_landmark_neighbors=3)
    assert stats["episode_ends"] == 4




def test_spread_terminate_on_success_and_local_ratio():
    # agents start on their landmarks (N=1 makes success immediate with no-op actions)
    def noop(spec, num_envs, rng, t):
        return {g: np.zeros((num_envs, spec.groups[g].num_agents), dtype=np.int64) for g in spec.groups}

    stats = run_lockstep("simple_spread_v3", steps=50, num_envs=2, N=1, terminate_on_success=True,
                         local_ratio=0.2, action_fn=noop)
    assert stats["steps"] == 100


def test_spread_curriculum_stage_switches_collision_penalty():
    import torch

    import fastmarl

    env = fastmarl.make("simple_spread_v3", num_envs=4, seed=0, curriculum=True, local_ratio=1.0)
    env.reset(seed=0)
    s = env.world_state
    pos = s.pos.clone()
    pos[:, :3] = torch.tensor([[0.0, 0.0], [0.05, 0.0], [0.0, 0.05]], dtype=pos.dtype)  # all overlapping
    env.set_world_state(s._replace(pos=pos))
    noop = {"agent": torch.zeros(4, 3, dtype=torch.long)}
    assert env.curriculum_stage == 0
    assert torch.all(env.step(noop).reward["agent"] == 0)  # stage 0: no collision penalty
    env.set_world_state(env.world_state._replace(pos=pos, vel=torch.zeros_like(pos)))
    env.advance_curriculum()
    assert env.curriculum_stage == 1
    assert torch.all(env.step(noop).reward["agent"] == -2)
    env.advance_curriculum()  # clamped at the last stage
    assert env.curriculum_stage == 1
    off = fastmarl.make("simple_spread_v3", num_envs=1)
    with pytest.raises(AttributeError, match="curriculum=True"):
        off.advance_curriculum()
