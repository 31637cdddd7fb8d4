"""Reference policies on simple_spread_v3 (N=3), scored like any trained policy."""

import pytest
import torch
from test_ppo_toyenv import one_thread  # noqa: F401 (autouse fixture)

import fastmarl
from fastmarl.envs.episodes import evaluate_policy
from fastmarl.envs.scripted import RandomPolicy, SpreadScripted


def test_scripted_and_random_scores_match_the_mpe2_references():
    env = fastmarl.make("simple_spread_v3", num_envs=500, seed=0, N=3, local_ratio=0.5, max_cycles=25)
    scripted = evaluate_policy(SpreadScripted(env.spec), env, seed=0)
    random = evaluate_policy(RandomPolicy(env.spec), env, seed=0, deterministic=False)
    # mpe2 references: scripted about -8.2, random about -27 (per agent, 25 steps)
    assert -9.0 < scripted["return"] < -7.0, scripted
    assert -28.5 < random["return"] < -24.5, random
    assert scripted["episodes"] == random["episodes"] == 500 and scripted["episode_length"] == 25


def test_scripted_assignment_is_a_matching_of_agents_to_landmarks():
    env = fastmarl.make("simple_spread_v3", num_envs=50, seed=1, N=4)
    pol = SpreadScripted(env.spec)
    ts = env.reset(seed=1)
    targets = pol.targets(ts.obs["agent"])  # (E, N, 2)
    landmarks = env.world_state.pos[:, 4:]
    # every landmark is the target of exactly one agent
    match = (targets[:, :, None] - landmarks[:, None]).abs().sum(-1) < 1e-5  # (E, agents, landmarks)
    assert torch.equal(match.sum(1), torch.ones(50, 4, dtype=torch.long))
    assert torch.equal(match.sum(2), torch.ones(50, 4, dtype=torch.long))


def test_scripted_policy_rejects_partial_observations():
    env = fastmarl.make("simple_spread_v3", num_envs=2, num_landmark_neighbors=2)
    with pytest.raises(ValueError, match="full observations"):
        SpreadScripted(env.spec)
