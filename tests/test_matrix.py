"""Matrix games: the batched API contract, the payoffs, episode structure, rendering."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import fastmarl
from fastmarl.envs import check_env, list_envs
from fastmarl.envs.matrix import CLIMBING, MONOTONIC, NONMONOTONIC, MatrixGame, penalty_payoff

GAMES = ["matrix_climbing_v0", "matrix_penalty_v0", "matrix_monotonic_v0", "matrix_nonmonotonic_v0",
         "matrix_custom_v0"]


def test_registered_in_family_matrix():
    fam = {e.env_id: e.family for e in list_envs()}
    for g in GAMES:
        assert fam[g] == "matrix"


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("episode_length", [1, 3])
@pytest.mark.parametrize("env_id", GAMES)
def test_check_env(env_id, episode_length, continuous):
    env = fastmarl.make(env_id, num_envs=4, seed=0, episode_length=episode_length, continuous_actions=continuous)
    check_env(env, steps=7)


@pytest.mark.parametrize("env_id,table", [("matrix_climbing_v0", CLIMBING), ("matrix_monotonic_v0", MONOTONIC),
                                          ("matrix_nonmonotonic_v0", NONMONOTONIC),
                                          ("matrix_penalty_v0", penalty_payoff(-100.0))])
def test_every_joint_action_pays_the_table(env_id, table):
    env = fastmarl.make(env_id, num_envs=9)
    env.reset(seed=0)
    joint = torch.tensor(list(itertools.product(range(3), range(3))))  # (9, 2): env e plays joint[e]
    ts = env.step({"agent": joint})
    want = torch.tensor([table[i][j] for i, j in joint.tolist()])
    assert torch.equal(ts.reward["agent"], want[:, None].expand(9, 2))  # team reward to both agents
    assert ts.terminated.all() and not ts.truncated.any()


def test_named_payoff_entries():
    env = fastmarl.make("matrix_climbing_v0")
    assert env.joint_payoff(torch.tensor([0, 0])).item() == 11
    assert env.joint_payoff(torch.tensor([0, 1])).item() == -30
    assert env.joint_payoff(torch.tensor([1, 2])).item() == 6
    assert env.optimal_actions() == [(0, 0)] and env.optimal_return == 11
    pen = fastmarl.make("matrix_penalty_v0", k=-25.0)
    assert pen.joint_payoff(torch.tensor([[0, 2], [2, 0], [1, 1], [2, 2]])).tolist() == [-25, -25, 2, 10]
    assert pen.optimal_actions() == [(0, 0), (2, 2)]
    non = fastmarl.make("matrix_nonmonotonic_v0")
    assert non.optimal_actions() == [(0, 0)] and non.optimal_return == 8
    assert non.joint_payoff(torch.tensor([[0, 1], [1, 2]])).tolist() == [-12, 0]


def test_monotonic_game_is_monotonic_and_nonmonotonic_is_not():
    """Rows and columns of the monotonic game are ordered componentwise (so a
    monotonic mix of per-agent utilities represents it); the non-monotonic one's
    best row is not best against every column."""
    m = torch.tensor(MONOTONIC)
    assert bool((m[:-1] >= m[1:]).all()) and bool((m[:, :-1] >= m[:, 1:]).all())
    n = torch.tensor(NONMONOTONIC)
    assert n[0, 0] > n[1, 1] and n[0, 1] < n[1, 1]  # row 0 is best against column 0 and worst against column 1


def test_episode_length_observation_and_state():
    env = fastmarl.make("matrix_monotonic_v0", num_envs=2, episode_length=3)
    assert env.spec.max_episode_steps == 3 and env.spec.state_dim == 4
    ts = env.reset(seed=0)
    assert ts.obs["agent"].shape == (2, 2, 4)
    assert ts.obs["agent"][0, 0].tolist() == [1, 0, 0, 0]
    a = {"agent": torch.tensor([[0, 0], [2, 2]])}
    total = torch.zeros(2)
    for t in range(1, 4):
        ts = env.step(a)
        total += ts.reward["agent"][:, 0]
        if t < 3:
            assert not ts.done.any()
            assert ts.obs["agent"][1, 1].tolist() == [0.0] * t + [1.0] + [0.0] * (3 - t)
            assert torch.equal(env.state(), ts.obs["agent"][:, 0])
        else:
            assert ts.terminated.all() and not ts.truncated.any()
            assert ts.final_obs["agent"][0, 0].tolist() == [0, 0, 0, 1]  # after the last step
            assert ts.final_state[0].tolist() == [0, 0, 0, 1]
            assert ts.obs["agent"][0, 0].tolist() == [1, 0, 0, 0]  # auto-reset
    assert total.tolist() == [30.0, 0.0]


def test_mixed_strategies():
    env = fastmarl.make("matrix_climbing_v0", num_envs=3, continuous_actions=True)
    env.reset(seed=0)
    w = torch.zeros(3, 2, 3)
    w[0, 0, 1] = w[0, 1, 2] = 0.7  # pure strategies (1, 2): payoff 6
    w[1] = 0.3  # uniform: the mean payoff
    w[2, 0, 0] = 1.0  # agent 0 plays 0; agent 1's weights are all 0: uniform -> (11 - 30 + 0) / 3
    r = env.step({"agent": w}).reward["agent"][:, 0]
    torch.testing.assert_close(r, torch.tensor([6.0, float(np.mean(CLIMBING)), -19.0 / 3]))


def test_custom_three_agent_game_and_render():
    payoff = np.arange(8.0).reshape(2, 2, 2)
    env = MatrixGame(payoff, num_envs=2)
    env.reset()
    assert env.spec.groups["agent"].num_agents == 3
    ts = env.step({"agent": torch.tensor([[1, 0, 1], [0, 1, 1]])})
    assert ts.reward["agent"][:, 0].tolist() == [5.0, 3.0]
    img = env.render(0)
    assert img.shape == (64, 128, 3) and img.dtype == np.uint8
    # the last joint action (1, 0, 1) is row 1, column ravel(0, 1) = 1: its frame is black
    assert (img[32 + 1, 32 + 10] == 0).all() and not (img[1, 10] == 0).all()


def test_bad_arguments():
    with pytest.raises(TypeError, match="unknown matrix_penalty_v0 keyword argument: 'kk'"):
        fastmarl.make("matrix_penalty_v0", kk=-3)
    with pytest.raises(ValueError, match="k must be <= 0"):
        fastmarl.make("matrix_penalty_v0", k=5)
    with pytest.raises(ValueError, match="one axis per agent"):
        MatrixGame([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="episode_length"):
        fastmarl.make("matrix_climbing_v0", episode_length=0)
