"""simple_v3 equals mpe2's, step for step (float64, shared initial state)."""

import pytest
from mpe_reference import assert_same_spaces, run_lockstep


@pytest.mark.parametrize("continuous", [False, True])
def test_simple_lockstep(continuous):
    assert_same_spaces("simple_v3", continuous=continuous)
    stats = run_lockstep("simple_v3", steps=200, num_envs=2, continuous=continuous)
    assert stats["episode_ends"] == 2 * (200 // 25)
    assert stats["terminations"] == 0


def test_simple_max_cycles():
    stats = run_lockstep("simple_v3", steps=60, num_envs=2, max_cycles=7)
    assert stats["episode_ends"] == 2 * (60 // 7)
